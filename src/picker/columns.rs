//! Column widths that fit the terminal, shared by the picker's rows and `postern list`: each
//! column gets its natural width (its widest cell) while the row fits; otherwise columns give
//! way in a fixed order (the least telling first: platform before Name), each down to a
//! floor, and cells are cut with `…`.

/// The widths of `natural` columns, separated by `gap` spaces, fitted into `available`
/// characters: the columns of `give_way`, in that order, shrink down to their `floor` until
/// the row fits (or is as narrow as the floors allow; columns not in `give_way` never shrink).
pub fn fit_widths(
    natural: &[usize],
    floor: &[usize],
    gap: usize,
    available: usize,
    give_way: &[usize],
) -> Vec<usize> {
    let mut widths = natural.to_vec();
    let total = widths.iter().sum::<usize>() + gap * widths.len().saturating_sub(1);
    let mut excess = total.saturating_sub(available);
    for &i in give_way {
        if excess == 0 {
            break;
        }
        let Some(width) = widths.get_mut(i) else {
            continue;
        };
        let spare = width.saturating_sub(floor.get(i).copied().unwrap_or(0));
        let take = spare.min(excess);
        *width -= take;
        excess -= take;
    }
    widths
}

/// `cell` cut to `width` characters (the last one `…` when cut) and padded with spaces.
pub fn fit_cell(cell: &str, width: usize) -> String {
    let count = cell.chars().count();
    if count <= width {
        let mut out = String::with_capacity(cell.len() + width - count);
        out.push_str(cell);
        out.extend(std::iter::repeat_n(' ', width - count));
        out
    } else if width == 0 {
        String::new()
    } else {
        let mut out: String = cell.chars().take(width - 1).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_widths_when_they_fit() {
        assert_eq!(
            fit_widths(&[5, 10, 3], &[1, 1, 1], 2, 80, &[0, 1, 2]),
            [5, 10, 3]
        );
    }

    #[test]
    fn columns_give_way_in_order_down_to_their_floor() {
        // 40 + 10 + 10 + 2 gaps of 2 = 64 > 50: the first to give way gives 14.
        assert_eq!(
            fit_widths(&[40, 10, 10], &[4, 4, 4], 2, 50, &[0, 1]),
            [26, 10, 10]
        );
        // Past its floor, the next one gives the rest.
        assert_eq!(
            fit_widths(&[20, 18, 4], &[15, 4, 4], 2, 30, &[0, 1]),
            [15, 7, 4]
        );
        // Floors, and columns that never give way, win over the width asked for.
        assert_eq!(fit_widths(&[20, 20], &[19, 0], 2, 10, &[0]), [19, 20]);
    }

    #[test]
    fn cells_are_cut_with_an_ellipsis_and_padded() {
        assert_eq!(fit_cell("web", 5), "web  ");
        assert_eq!(fit_cell("web-frontend", 6), "web-f…");
        assert_eq!(fit_cell("abc", 0), "");
    }
}
