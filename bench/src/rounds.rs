//! Repeats measured in rounds. On a shared machine the background load drifts over minutes;
//! running all of one client's repeats back to back would hand that drift to one client and
//! skew the ratios. In rounds, each client runs once per round, so a disturbance lands on every
//! client alike, and the ratios of one run compare like with like.

/// What the repeats of one case gave: the figures of those that completed, and why the others
/// failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Repeats<T> {
    /// Figures of the repeats that completed, in the order they ran.
    pub ok: Vec<T>,
    /// Why each of the other repeats failed.
    pub failed: Vec<String>,
}

impl<T> Default for Repeats<T> {
    fn default() -> Self {
        Self {
            ok: Vec::new(),
            failed: Vec::new(),
        }
    }
}

impl<T> Repeats<T> {
    /// The repeat in the middle when ordered by `key`, with the failures beside it; the first
    /// failure when no repeat completed.
    pub fn median_by(
        mut self,
        mut key: impl FnMut(&T, &T) -> std::cmp::Ordering,
    ) -> Result<(T, Vec<String>), String> {
        if self.ok.is_empty() {
            return Err(self
                .failed
                .into_iter()
                .next()
                .unwrap_or_else(|| "not run".into()));
        }
        self.ok.sort_by(&mut key);
        let mid = self.ok.len() / 2;
        Ok((self.ok.swap_remove(mid), self.failed))
    }
}

/// Runs `once` on every case `rounds` times: one round runs each case once, and each round
/// starts one case further on than the last, so no case always follows the same neighbour.
/// Returns each case's repeats, in the order of `cases`.
pub fn run<C, T>(
    cases: &[C],
    rounds: usize,
    mut once: impl FnMut(&C) -> Result<T, String>,
) -> Vec<Repeats<T>> {
    let mut out: Vec<Repeats<T>> = cases.iter().map(|_| Repeats::default()).collect();
    if cases.is_empty() {
        return out;
    }
    for round in 0..rounds {
        for k in 0..cases.len() {
            let i = (round + k) % cases.len();
            match once(&cases[i]) {
                Ok(v) => out[i].ok.push(v),
                Err(e) => out[i].failed.push(e),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_round_runs_every_case_once_and_starts_one_further_on() {
        let mut order = Vec::new();
        let out = run(&["a", "b", "c"], 3, |c| {
            order.push(*c);
            Ok::<_, String>(order.len())
        });
        assert_eq!(order, ["a", "b", "c", "b", "c", "a", "c", "a", "b"]);
        assert_eq!(out[0].ok, [1, 6, 8]);
        assert_eq!(out[1].ok, [2, 4, 9]);
        assert_eq!(out[2].ok, [3, 5, 7]);
    }

    #[test]
    fn failures_are_kept_per_case_beside_the_figures() {
        let mut n = 0;
        let out = run(&[1, 2], 2, |&c| {
            n += 1;
            if c == 2 && n > 2 {
                Err(format!("crash {n}"))
            } else {
                Ok(c * 10)
            }
        });
        assert_eq!(out[0].ok, [10, 10]);
        assert_eq!(out[1].ok, [20]);
        assert_eq!(out[1].failed, ["crash 3"]);
    }

    #[test]
    fn the_median_keeps_the_failures_and_no_figure_gives_the_first_failure() {
        let r = Repeats {
            ok: vec![5, 1, 9],
            failed: vec!["crash".to_string()],
        };
        assert_eq!(r.median_by(Ord::cmp), Ok((5, vec!["crash".to_string()])));
        let r = Repeats::<u8> {
            ok: vec![],
            failed: vec!["first".into(), "second".into()],
        };
        assert_eq!(r.median_by(Ord::cmp), Err("first".to_string()));
    }

    #[test]
    fn no_cases_or_no_rounds_run_nothing() {
        let out = run(&[] as &[u8], 3, |_| -> Result<(), String> {
            unreachable!()
        });
        assert!(out.is_empty());
        let out = run(&[1], 0, |_| -> Result<(), String> { unreachable!() });
        assert_eq!(out, [Repeats::default()]);
    }
}
