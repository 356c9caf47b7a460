"""DDPM schedule and bound in float64 (mirrors src/schedule.rs and src/diffusion.rs)."""
import math

import numpy as np
import torch


class Schedule:
    """Linear beta schedule, T=1000, optionally respaced to the sub-sequence taus (0 excluded)."""

    def __init__(self, T=1000, beta_start=1e-4, beta_end=0.02, taus=None):
        betas = np.linspace(beta_start, beta_end, T, dtype=np.float64)
        abar_full = np.cumprod(1.0 - betas)
        if taus is None:
            taus = list(range(1, T + 1))
        self.taus = np.array(taus, dtype=np.int64)  # model times t (1..T), one per chain step
        abar = abar_full[self.taus - 1]
        abar_prev = np.concatenate([[1.0], abar[:-1]])
        self.abar = abar
        self.abar_prev = abar_prev
        self.beta = 1.0 - abar / abar_prev
        self.alpha = 1.0 - self.beta
        self.beta_tilde = self.beta * (1.0 - abar_prev) / (1.0 - abar)
        # beta_tilde of the first step is 0; clip it to the second (as improved-diffusion does)
        if len(self.beta_tilde) > 1:
            self.beta_tilde_clipped = np.concatenate([[self.beta_tilde[1]], self.beta_tilde[1:]])
        else:
            self.beta_tilde_clipped = self.beta.copy()

    @staticmethod
    def even(K, T=1000):
        taus = [int(round((i + 1) * T / K)) for i in range(K)]
        return Schedule(T=T, taus=taus)

    @staticmethod
    def dense(K, T=1000):
        """The codec's default chain (src/schedule.rs quadratic_taus): tau_i = round-half-even
        of T*i^2/K^2, i = 1..K, made strictly increasing (forward: at least prev + 1;
        backward: the last is T and each leaves room for the next)."""
        def rhe(n, d):
            q, r = divmod(n, d)
            return q + 1 if 2 * r > d else (q + (q & 1) if 2 * r == d else q)
        raw = [rhe(T * i * i, K * K) for i in range(1, K + 1)]
        taus, prev = [], 0
        for r in raw:
            prev = max(r, prev + 1)
            taus.append(prev)
        nxt = T + 1
        for j in range(K - 1, -1, -1):
            cap = nxt - 1
            if taus[j] > cap or nxt == T + 1:
                taus[j] = cap
            nxt = taus[j]
        return Schedule(T=T, taus=taus)

    def sigma2(self, variance, tables=None):
        """Reverse variance per chain step. "optimal" (src/schedule.rs optimal_sigma2) needs the
        model's calibrated tables {"x0_mse", "final_std"} (per model time t = 1..T):
        beta_tilde + c0^2 * mse(t) for steps i >= 1, final_std(t)^2 at the first step."""
        if variance == "large":
            return self.beta
        if variance == "small":
            return self.beta_tilde_clipped
        if variance != "optimal":
            raise ValueError(f"variance {variance!r} (small, large or optimal)")
        if tables is None:
            raise ValueError("variance optimal needs the model's variance tables")
        out = np.empty(len(self.taus))
        for i, t in enumerate(self.taus):
            if i == 0:
                fs = tables["final_std"]
                sd = fs[t - 1] if t <= len(fs) else math.sqrt(tables["x0_mse"][t - 1])
                out[i] = max(sd, 2.0 / 255.0 / 10.0) ** 2
            else:
                c0 = math.sqrt(self.abar_prev[i]) * self.beta[i] / (1 - self.abar[i])
                out[i] = self.beta_tilde[i] + c0 * c0 * max(tables["x0_mse"][t - 1], 0.0)
        return out


def learned_log_var(v, beta, beta_tilde_clipped):
    """Improved DDPM's reverse log-variance: f log beta + (1 - f) log beta_tilde, f = (v + 1) / 2,
    per element; beta and beta_tilde_clipped are the chain step's scalars (src/diffusion.rs)."""
    f = (v + 1.0) / 2.0
    return f * math.log(beta) + (1.0 - f) * math.log(beta_tilde_clipped)


def normal_kl(mu1, var1, mu2, var2):
    """KL(N(mu1,var1)||N(mu2,var2)) per element, nats."""
    return 0.5 * (torch.log(var2 / var1) + (var1 + (mu1 - mu2) ** 2) / var2 - 1.0)


def approx_std_normal_cdf(x):
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_likelihood(x, mean, std):
    """log p(x) for x on the 256-level grid in [-1,1], bins of width 2/255, edges open."""
    x, mean, std = x.double(), mean.double(), std.double()
    upper = torch.where(x > 0.999, torch.full_like(x, math.inf), x + 1.0 / 255.0)
    lower = torch.where(x < -0.999, torch.full_like(x, -math.inf), x - 1.0 / 255.0)
    cdf_up = approx_std_normal_cdf((upper - mean) / std)
    cdf_lo = approx_std_normal_cdf((lower - mean) / std)
    # upper tail via the complementary cdf for precision
    sf_lo = 0.5 * torch.erfc((lower - mean) / (std * math.sqrt(2.0)))
    sf_up = 0.5 * torch.erfc((upper - mean) / (std * math.sqrt(2.0)))
    p = torch.where(mean > x, cdf_up - cdf_lo, sf_lo - sf_up)
    return torch.log(torch.clamp(p, min=1e-300))


@torch.no_grad()
def bits_per_dim(model, x0, sched: Schedule, variance="small", gen=None, tables=None):
    """Exact bound over every step of the chain for a batch x0 in [-1,1]. Returns dict of per-image tensors (bits/dim)."""
    B = x0.shape[0]
    D = x0[0].numel()
    x0d = x0.double()
    K = len(sched.taus)
    out = {"prior": None, "terms": torch.zeros(B, dtype=torch.float64), "l0": None}
    abarT = sched.abar[-1]
    mu = math.sqrt(abarT) * x0d
    var = torch.full_like(mu, 1.0 - abarT)
    out["prior"] = normal_kl(mu, var, torch.zeros_like(mu), torch.ones_like(mu)).flatten(1).sum(1) / (D * math.log(2))
    learned = variance == "learned"
    s2 = None if learned else sched.sigma2(variance, tables)
    for i in range(K):
        t = int(sched.taus[i])
        abar, abar_prev = sched.abar[i], sched.abar_prev[i]
        noise = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
        xt = math.sqrt(abar) * x0d + math.sqrt(1 - abar) * noise
        out_m = model(xt.float(), torch.full((B,), t, dtype=torch.long)).double()
        C = x0.shape[1]
        eps = out_m[:, :C]
        if learned:
            if out_m.shape[1] != 2 * C:
                raise ValueError("variance learned needs a learn_sigma model")
            var_p = torch.exp(learned_log_var(out_m[:, C:], sched.beta[i], sched.beta_tilde_clipped[i]))
        else:
            var_p = torch.full_like(xt, s2[i])
        x0_pred = ((xt - math.sqrt(1 - abar) * eps) / math.sqrt(abar)).clamp(-1, 1)
        if i == 0:
            # L_0: discretized Gaussian decoder at the first chain step
            mean = x0_pred
            ll = discretized_gaussian_log_likelihood(x0d, mean, var_p.sqrt())
            out["l0"] = -ll.flatten(1).sum(1) / (D * math.log(2))
            continue
        c0 = math.sqrt(abar_prev) * sched.beta[i] / (1 - abar)
        ct = math.sqrt(sched.alpha[i]) * (1 - abar_prev) / (1 - abar)
        mu_q = c0 * x0d + ct * xt
        mu_p = c0 * x0_pred + ct * xt
        kl = normal_kl(mu_q, torch.full_like(mu_q, sched.beta_tilde[i]), mu_p, var_p)
        out["terms"] += kl.flatten(1).sum(1) / (D * math.log(2))
    out["total"] = out["prior"] + out["terms"] + out["l0"]
    return out
