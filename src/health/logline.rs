//! The `log` check: does a complete line of a service's output contain a
//! text? Fed the output in whatever pieces the pipe gives, in constant
//! memory (only the last few bytes of an unfinished line are kept).

/// Watches one service's output for one text.
#[derive(Clone, Debug)]
pub struct LineMatch {
    needle: Vec<u8>,
    /// The end of the unfinished line, shorter than the needle: a match
    /// may straddle two pieces.
    carry: Vec<u8>,
    /// The unfinished line already contains the needle.
    hit: bool,
}

impl LineMatch {
    pub fn new(text: &str) -> LineMatch {
        LineMatch {
            needle: text.as_bytes().to_vec(),
            carry: Vec::new(),
            hit: false,
        }
    }

    /// Feeds new output; true once a line that contains the text has ended
    /// (with `\n`) in what was fed so far.
    pub fn feed(&mut self, data: &[u8]) -> bool {
        if self.needle.is_empty() {
            return false;
        }
        for seg in data.split_inclusive(|&b| b == b'\n') {
            let (body, complete) = match seg.split_last() {
                Some((b'\n', body)) => (body, true),
                _ => (seg, false),
            };
            if !self.hit {
                let mut window = std::mem::take(&mut self.carry);
                window.extend_from_slice(body);
                self.hit = contains(&window, &self.needle);
                let keep = self.needle.len() - 1;
                let start = window.len().saturating_sub(keep);
                self.carry = window.get(start..).unwrap_or_default().to_vec();
            }
            if complete {
                if self.hit {
                    return true;
                }
                self.carry.clear();
            }
        }
        false
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, _)) = needle.split_first() else {
        return true;
    };
    hay.iter()
        .enumerate()
        .any(|(i, &b)| b == first && hay.get(i..i + needle.len()).is_some_and(|w| w == needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_line_matches() {
        let mut m = LineMatch::new("ready to accept connections");
        assert!(!m.feed(b"starting\nloading data\n"));
        assert!(m.feed(b"LOG:  database system is ready to accept connections\n"));
    }

    #[test]
    fn only_a_completed_line_counts() {
        let mut m = LineMatch::new("ready");
        assert!(!m.feed(b"server ready"), "the line has not ended");
        assert!(m.feed(b" on port 80\n"));
    }

    #[test]
    fn a_match_split_across_pieces_is_found() {
        let text = b"log: ready to accept connections\r\n";
        for cut1 in 0..text.len() {
            for cut2 in cut1..text.len() {
                let mut m = LineMatch::new("ready to accept");
                let a = m.feed(&text[..cut1]);
                let b = m.feed(&text[cut1..cut2]);
                let c = m.feed(&text[cut2..]);
                assert!(a || b || c, "cut at {cut1}/{cut2}");
            }
        }
    }

    #[test]
    fn no_match_across_lines_and_bounded_memory() {
        let mut m = LineMatch::new("ready");
        assert!(!m.feed(b"rea\ndy\n"), "the text spans two lines");
        let long = vec![b'x'; 1 << 20];
        assert!(!m.feed(&long));
        assert!(m.carry.len() < 5, "keeps only a tail");
        assert!(m.feed(b"...ready\n"));
    }
}
