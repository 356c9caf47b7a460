//! The coded transitions of a chain (formats 6–7, format/SPEC.md § 8 "Deferred steps"): which
//! chain step a coded transition goes to, what its side information is coded against, and the
//! diffusion of a transition that spans several chain steps. Encoder and decoder run the same
//! code on decoded values, so the plan costs no symbols; only [`crate::codec`] uses it.

use crate::diffusion::Diffusion;
use crate::error::Result;
use crate::schedule::{Schedule, VarianceTables};

/// The coded transitions of a chain (format/SPEC.md § 8, "Deferred steps"), the same on both
/// sides. With a deferral target D = 0 every chain step is coded and its side information is a
/// delta to the previous step's. Else, from the state at chain index `ia`, the next coded
/// transition goes to the first index j < ia with E·(SNR(τ_j) − SNR(τ_ia)) ≥ n·D (n tiles; or to index 0),
/// where E = max(KLhat, KLhat(1)) / ΔSNR of the last coded transition (bits per unit of SNR:
/// a step's KL is ½ ΔSNR ‖x_0 − x̂_0‖² nats when p_θ's variance is q's), and its side
/// information is a delta to the planned q̂ (the largest q with KLhat(q) ≤ E·ΔSNR). The first
/// transition is the chain's first step. The steps in between are deferred: empty packets.
pub(crate) struct Planner {
    defer_bits: f64,
    /// E of the last coded transition (None before the first).
    rate: Option<f64>,
}

impl Planner {
    /// `defer_bits`: the target D per 32×32 tile; the plan of an image of `tiles` tiles
    /// works with `tiles · D` (its KL grows with its tile count).
    pub(crate) fn new(defer_bits: f64, tiles: usize) -> Self {
        Planner { defer_bits: defer_bits * tiles as f64, rate: None }
    }

    fn snr(s: &Schedule, i: usize) -> f64 {
        let a = s.alpha_bar_at(s.model_t(i));
        a / (1.0 - a)
    }

    fn delta_snr(s: &Schedule, ia: usize, j: usize) -> f64 {
        Self::snr(s, j) - Self::snr(s, ia)
    }

    /// The chain index the transition from index `ia` (≥ 1) goes to.
    pub(crate) fn target(&self, s: &Schedule, ia: usize) -> usize {
        match self.rate {
            Some(e) if self.defer_bits > 0.0 => (0..ia).rev().find(|&j| e * Self::delta_snr(s, ia, j) >= self.defer_bits).unwrap_or(0),
            _ => ia - 1,
        }
    }

    /// The reference the transition's side information is coded against.
    pub(crate) fn q_ref(&self, s: &Schedule, ia: usize, j: usize, prev_q: u32) -> u32 {
        match self.rate {
            Some(e) if self.defer_bits > 0.0 => {
                let kl = e * Self::delta_snr(s, ia, j);
                (1..=crate::entropy::Q_MAX).take_while(|&q| crate::entropy::kl_hat_bits(q) <= kl).last().unwrap_or(0)
            }
            None if self.defer_bits > 0.0 => 0,
            _ => prev_q,
        }
    }

    /// Records the coded transition `ia → j` with side information `q`.
    pub(crate) fn update(&mut self, s: &Schedule, ia: usize, j: usize, q: u32) {
        if self.defer_bits > 0.0 {
            let kl = crate::entropy::kl_hat_bits(q).max(crate::entropy::kl_hat_bits(1));
            self.rate = Some(kl / Self::delta_snr(s, ia, j));
        }
    }
}

/// The chain's transition from index `ia` to `j` < `ia`: the chain's own step `ia` when
/// `j = ia − 1`, else step 1 of the respaced chain (τ_j, τ_ia[, T]) — the same network output
/// at τ_ia, the posterior and p_θ of the merged step.
pub(crate) struct Transition {
    diff: Option<Diffusion>,
    pub(crate) index: usize,
}

impl Transition {
    pub(crate) fn new(diff: &Diffusion, tables: Option<&VarianceTables>, ia: usize, j: usize) -> Result<Self> {
        if j + 1 == ia {
            return Ok(Transition { diff: None, index: ia });
        }
        let s = &diff.schedule;
        let mut taus = vec![s.model_t(j), s.model_t(ia)];
        if s.model_t(ia) < s.t_max() {
            taus.push(s.t_max());
        }
        let sub = Diffusion::with_tables(Schedule::respaced(s.t_max(), taus)?, diff.variance, tables)?;
        Ok(Transition { diff: Some(sub), index: 1 })
    }

    pub(crate) fn diff<'a>(&'a self, chain: &'a Diffusion) -> &'a Diffusion {
        self.diff.as_ref().unwrap_or(chain)
    }

    /// p_θ's std per dimension for a learned variance (from the raw v).
    pub(crate) fn learned_std(&self, chain: &Diffusion, v: &Option<Vec<f32>>) -> Option<Vec<f32>> {
        v.as_ref().map(|v| crate::schedule::learned_sigma(&self.diff(chain).schedule, self.index, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::kl_hat_bits;

    #[test]
    fn the_plan_reaches_the_target_and_no_further() {
        let s = Schedule::linear(1000).unwrap();
        let mut p = Planner::new(24.0, 1);
        // before the first transition: the chain's own step, coded against 0
        assert_eq!((p.target(&s, 999), p.q_ref(&s, 999, 998, 7)), (998, 0));
        p.update(&s, 999, 998, 3);
        let e = kl_hat_bits(3) / Planner::delta_snr(&s, 999, 998);
        let j = p.target(&s, 998);
        assert!(j < 997, "a small KL defers steps");
        assert!(e * Planner::delta_snr(&s, 998, j) >= 24.0 && e * Planner::delta_snr(&s, 998, j + 1) < 24.0);
        let q = p.q_ref(&s, 998, j, 0);
        let kl = e * Planner::delta_snr(&s, 998, j);
        assert!(kl_hat_bits(q) <= kl && kl_hat_bits(q + 1) > kl);
        // D is per tile: four tiles at 24 bits plan as one at 96
        let (mut p4, mut p96) = (Planner::new(24.0, 4), Planner::new(96.0, 1));
        p4.update(&s, 999, 998, 12);
        p96.update(&s, 999, 998, 12);
        assert_eq!(p4.target(&s, 998), p96.target(&s, 998));
        assert_ne!(p4.target(&s, 998), p.target(&s, 998));
        // without deferral: every step, coded against the previous q
        let p0 = Planner::new(0.0, 1);
        assert_eq!((p0.target(&s, 500), p0.q_ref(&s, 500, 499, 7)), (499, 7));
    }
}
