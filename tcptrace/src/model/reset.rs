//! The kernel's reasons for the resets this host sends (`enum
//! sk_rst_reason`), and their names as the running kernel publishes them
//! in `tcp:tcp_send_reset`'s format: no table of them here.

/// A reason's value, as the kernel gave it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResetReason(pub u8);

/// Resets sent, by reason: few reasons in practice, so a short list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReasonCounts(Vec<(ResetReason, u64)>);

impl ReasonCounts {
    pub fn add(&mut self, reason: ResetReason) {
        match self.0.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.0.push((reason, 1)),
        }
    }

    pub fn merge(&mut self, other: &ReasonCounts) {
        for &(reason, n) in &other.0 {
            match self.0.iter_mut().find(|(r, _)| *r == reason) {
                Some((_, total)) => *total += n,
                None => self.0.push((reason, n)),
            }
        }
    }

    pub fn total(&self) -> u64 {
        self.0.iter().map(|(_, n)| n).sum()
    }

    /// The reasons counted, most first: (reason, count).
    pub fn most_first(&self) -> Vec<(ResetReason, u64)> {
        let mut rows = self.0.clone();
        rows.sort_by_key(|&(r, n)| (std::cmp::Reverse(n), r));
        rows
    }
}

impl FromIterator<ResetReason> for ReasonCounts {
    fn from_iter<I: IntoIterator<Item = ResetReason>>(reasons: I) -> Self {
        let mut counts = Self::default();
        for reason in reasons {
            counts.add(reason);
        }
        counts
    }
}

/// The names of the reasons, by value, from the running kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResetNames(Vec<(u32, Box<str>)>);

impl ResetNames {
    pub fn new(names: Vec<(u32, Box<str>)>) -> Self {
        Self(names)
    }

    /// Whether the kernel gives reasons at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A reason's name; its number where the kernel named none.
    pub fn name(&self, reason: ResetReason) -> String {
        self.0
            .iter()
            .find(|(v, _)| *v == u32::from(reason.0))
            .map_or_else(|| reason.0.to_string(), |(_, n)| n.to_string())
    }

    /// The value of the reason named `name`.
    pub fn value(&self, name: &str) -> Option<ResetReason> {
        self.0
            .iter()
            .find(|(_, n)| &**n == name)
            .and_then(|(v, _)| u8::try_from(*v).ok().map(ResetReason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_most_first_and_names_by_value() {
        let mut counts = ReasonCounts::default();
        for r in [12, 12, 11, 200] {
            counts.add(ResetReason(r));
        }
        assert_eq!(counts.total(), 4);
        assert_eq!(
            counts.most_first(),
            [
                (ResetReason(12), 2),
                (ResetReason(11), 1),
                (ResetReason(200), 1)
            ]
        );
        let names = ResetNames::new(vec![(12, "TCP_ABORT_ON_LINGER".into())]);
        assert_eq!(names.name(ResetReason(12)), "TCP_ABORT_ON_LINGER");
        assert_eq!(names.name(ResetReason(11)), "11");
        assert_eq!(names.value("TCP_ABORT_ON_LINGER"), Some(ResetReason(12)));
        assert!(ResetNames::default().is_empty());
    }
}
