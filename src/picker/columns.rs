//! Column widths that fit the terminal, shared by the picker's rows and `postern list`: each
//! column gets its natural width (its widest cell) while the row fits; otherwise the widest
//! columns give up characters first, down to a floor, and cells are cut with `…`.

/// The widths of `natural` columns, separated by `gap` spaces, fitted into `available`
/// characters: the widest column above its `floor` shrinks first, one character at a time,
/// until the row fits or every column is at its floor (the row is then wider than asked). Ties
/// shrink the leftmost first, so equal columns stay within one character of each other.
pub fn fit_widths(natural: &[usize], floor: &[usize], gap: usize, available: usize) -> Vec<usize> {
    let mut widths = natural.to_vec();
    let total = |w: &[usize]| w.iter().sum::<usize>() + gap * w.len().saturating_sub(1);
    let mut excess = total(&widths).saturating_sub(available);
    while excess > 0 {
        let widest = widths
            .iter()
            .enumerate()
            .filter(|&(i, &w)| w > floor.get(i).copied().unwrap_or(0))
            .max_by_key(|&(i, &w)| (w, std::cmp::Reverse(i)))
            .map(|(i, _)| i);
        let Some(i) = widest else { break };
        widths[i] -= 1;
        excess -= 1;
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
        assert_eq!(fit_widths(&[5, 10, 3], &[1, 1, 1], 2, 80), [5, 10, 3]);
    }

    #[test]
    fn the_widest_columns_shrink_first_down_to_their_floor() {
        // 40 + 10 + 10 + 2 gaps of 2 = 64 > 50: the 40 gives up 14.
        assert_eq!(fit_widths(&[40, 10, 10], &[4, 4, 4], 2, 50), [26, 10, 10]);
        // Past the next widest, both shrink together.
        assert_eq!(fit_widths(&[20, 18, 4], &[4, 4, 4], 2, 30), [11, 11, 4]);
        // Floors win over the width asked for.
        assert_eq!(fit_widths(&[20, 20], &[19, 19], 2, 10), [19, 19]);
    }

    #[test]
    fn cells_are_cut_with_an_ellipsis_and_padded() {
        assert_eq!(fit_cell("web", 5), "web  ");
        assert_eq!(fit_cell("web-frontend", 6), "web-f…");
        assert_eq!(fit_cell("abc", 0), "");
    }
}
