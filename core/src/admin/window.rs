//! An event's time window: when it starts and ends, either or both open.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `starts_at` and `ends_at` of an event. Either may be absent (not yet scheduled); when
/// both are set the end is strictly after the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeWindow {
    starts_at: Option<OffsetDateTime>,
    ends_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ends_at ({ends_at}) must be after starts_at ({starts_at})")]
pub struct WindowError {
    pub starts_at: String,
    pub ends_at: String,
}

impl TimeWindow {
    pub fn new(
        starts_at: Option<OffsetDateTime>,
        ends_at: Option<OffsetDateTime>,
    ) -> Result<TimeWindow, WindowError> {
        if let (Some(start), Some(end)) = (starts_at, ends_at) {
            if end <= start {
                let text = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_else(|_| t.to_string());
                return Err(WindowError {
                    starts_at: text(start),
                    ends_at: text(end),
                });
            }
        }
        Ok(TimeWindow { starts_at, ends_at })
    }

    pub fn starts_at(&self) -> Option<OffsetDateTime> {
        self.starts_at
    }

    pub fn ends_at(&self) -> Option<OffsetDateTime> {
        self.ends_at
    }
}

/// A change to one end of a window: keep what is stored, clear it, or set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<T> {
    Keep,
    Clear,
    Set(T),
}

impl TimeWindow {
    /// The window after applying `starts_at` and `ends_at` to this one, checked as a whole:
    /// moving only the start past the stored end is refused like any other inverted window.
    pub fn changed(
        &self,
        starts_at: Change<OffsetDateTime>,
        ends_at: Change<OffsetDateTime>,
    ) -> Result<TimeWindow, WindowError> {
        let apply = |current: Option<OffsetDateTime>, change| match change {
            Change::Keep => current,
            Change::Clear => None,
            Change::Set(t) => Some(t),
        };
        TimeWindow::new(
            apply(self.starts_at, starts_at),
            apply(self.ends_at, ends_at),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).unwrap()
    }

    #[test]
    fn open_ends_are_allowed() {
        assert!(TimeWindow::new(None, None).is_ok());
        assert!(TimeWindow::new(Some(t("2026-05-01T09:00:00Z")), None).is_ok());
        assert!(TimeWindow::new(None, Some(t("2026-05-01T09:00:00Z"))).is_ok());
    }

    #[test]
    fn the_end_must_be_after_the_start() {
        let start = t("2026-05-01T09:00:00Z");
        assert!(TimeWindow::new(Some(start), Some(t("2026-05-01T15:00:00Z"))).is_ok());
        let error = TimeWindow::new(Some(start), Some(start)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "ends_at (2026-05-01T09:00:00Z) must be after starts_at (2026-05-01T09:00:00Z)"
        );
        assert!(TimeWindow::new(Some(start), Some(t("2026-05-01T08:00:00Z"))).is_err());
    }

    #[test]
    fn a_change_is_checked_against_what_is_kept() {
        let window = TimeWindow::new(
            Some(t("2026-05-01T09:00:00Z")),
            Some(t("2026-05-01T15:00:00Z")),
        )
        .unwrap();
        assert!(window
            .changed(Change::Set(t("2026-05-01T16:00:00Z")), Change::Keep)
            .is_err());
        let moved = window
            .changed(Change::Set(t("2026-05-01T16:00:00Z")), Change::Clear)
            .unwrap();
        assert_eq!(moved.ends_at(), None);
        assert_eq!(window.changed(Change::Keep, Change::Keep), Ok(window));
    }

    #[test]
    fn a_window_gives_back_its_ends() {
        let (start, end) = (t("2026-05-01T09:00:00Z"), t("2026-05-01T15:00:00Z"));
        let window = TimeWindow::new(Some(start), Some(end)).unwrap();
        assert_eq!(
            (window.starts_at(), window.ends_at()),
            (Some(start), Some(end))
        );
        let open = TimeWindow::new(None, Some(end)).unwrap();
        assert_eq!((open.starts_at(), open.ends_at()), (None, Some(end)));
    }
}
