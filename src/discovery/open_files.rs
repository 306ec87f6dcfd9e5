//! Room for the connections of concurrent listings: each scope in flight holds up to two HTTP
//! connections (EC2 and SSM), and the soft limit on open files is low on some systems (256 on
//! macOS). The soft limit is raised towards the hard one when that makes room (as Go's runtime
//! does at start), else the concurrency is lowered to fit.

/// Open files kept free for everything else (cache files, the terminal, the runtime).
const RESERVED: u64 = 128;
/// Connections per listing in flight.
const PER_SCOPE: u64 = 2;

/// The concurrency to use for `wanted` listings at once: `wanted` when the open-files limit
/// allows it (raising the soft limit if needed and permitted), else as many as fit, at least 1.
pub(crate) fn fit_concurrency(wanted: usize) -> usize {
    let needed = RESERVED + PER_SCOPE * wanted as u64;
    let Some(limit) = raise_soft_limit(needed) else {
        return wanted;
    };
    let room = limit.saturating_sub(RESERVED) / PER_SCOPE;
    let fitted = wanted
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1);
    if fitted < wanted {
        tracing::debug!(
            wanted,
            fitted,
            limit,
            "open-files limit: fewer listings in flight"
        );
    }
    fitted
}

/// Raises the soft open-files limit to `needed` when it is lower and the hard limit allows;
/// returns the soft limit in effect (`None` when it cannot be read).
#[cfg(unix)]
fn raise_soft_limit(needed: u64) -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; RLIMIT_NOFILE is a valid resource.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur == libc::RLIM_INFINITY {
        return Some(u64::MAX);
    }
    let current: u64 = limit.rlim_cur;
    if current >= needed {
        return Some(current);
    }
    let target = if limit.rlim_max == libc::RLIM_INFINITY {
        needed
    } else {
        needed.min(limit.rlim_max)
    };
    let raised = libc::rlimit {
        rlim_cur: target,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we own; only the soft limit changes, within the hard.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        Some(target)
    } else {
        Some(current)
    }
}

#[cfg(not(unix))]
fn raise_soft_limit(_needed: u64) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_what_the_limit_allows() {
        let fitted = fit_concurrency(64);
        assert!((1..=64).contains(&fitted), "{fitted}");
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        if limit.rlim_cur != libc::RLIM_INFINITY {
            let room = limit.rlim_cur.saturating_sub(RESERVED) / PER_SCOPE;
            assert!(fitted as u64 <= room.max(1), "{fitted} > {room}");
        }
        assert_eq!(fit_concurrency(1), 1);
    }
}
