//! Exponential back-off between retries.

/// Delay before retry number `attempt` (1 for the first retry): doubling from `min_ms`,
/// capped at `max_ms`.
pub(crate) fn backoff_ms(attempt: u32, min_ms: u64, max_ms: u64) -> u64 {
    let shift = attempt.saturating_sub(1).min(32);
    min_ms.saturating_mul(1u64 << shift).min(max_ms)
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn doubles_then_caps() {
        assert_eq!(backoff_ms(1, 100, 5_000), 100);
        assert_eq!(backoff_ms(2, 100, 5_000), 200);
        assert_eq!(backoff_ms(6, 100, 5_000), 3_200);
        assert_eq!(backoff_ms(7, 100, 5_000), 5_000);
        assert_eq!(backoff_ms(u32::MAX, 100, 5_000), 5_000);
    }
}
