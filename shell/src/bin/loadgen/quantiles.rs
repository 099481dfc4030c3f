//! Nearest-rank quantiles of a handful of samples (tens: subscribe times, one figure per
//! replay). Millions of samples go to a histogram instead.

pub struct Quantiles {
    sorted: Vec<f64>,
}

impl Quantiles {
    pub fn new(mut samples: Vec<f64>) -> Quantiles {
        samples.sort_by(f64::total_cmp);
        Quantiles { sorted: samples }
    }

    /// The smallest sample with at least `q` of them at or below it (0 when empty). With
    /// fewer than 100 samples the 0.99 quantile is the largest.
    pub fn at(&self, q: f64) -> f64 {
        let n = self.sorted.len();
        if n == 0 {
            return 0.0;
        }
        let rank = (q.clamp(0.0, 1.0) * n as f64).ceil() as usize;
        self.sorted[rank.clamp(1, n) - 1]
    }

    pub fn min(&self) -> f64 {
        self.sorted.first().copied().unwrap_or(0.0)
    }

    pub fn max(&self) -> f64 {
        self.sorted.last().copied().unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let q = Quantiles::new((1..=50).rev().map(f64::from).collect());
        assert_eq!(q.at(0.5), 25.0);
        assert_eq!(q.at(0.99), 50.0);
        assert_eq!(q.min(), 1.0);
        assert_eq!(q.max(), 50.0);
        let q = Quantiles::new((1..=1000).map(f64::from).collect());
        assert_eq!(q.at(0.99), 990.0);
        assert_eq!(Quantiles::new(Vec::new()).at(0.5), 0.0);
    }
}
