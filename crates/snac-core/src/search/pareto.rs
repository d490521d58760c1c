//! Pareto dominance, non-dominated sorting, crowding distance and the 2-D
//! hypervolume: the multi-objective arithmetic that NSGA-II and the reports
//! share. The definitions follow Optuna's (`study/_multi_objective.py`,
//! `samplers/nsgaii/_elite_population_selection_strategy.py`), including its
//! constrained domination.
//!
//! ```
//! use snac_core::search::Direction;
//! use snac_core::search::pareto::{dominates, fast_non_dominated_sort};
//!
//! let min2 = [Direction::Minimize, Direction::Minimize];
//! assert!(dominates(&[1.0, 1.0], &[1.0, 2.0], &min2));
//! let points = [vec![1.0, 2.0], vec![2.0, 1.0], vec![2.0, 2.0]];
//! assert_eq!(fast_non_dominated_sort(&points, None, &min2), vec![vec![0, 1], vec![2]]);
//! ```

use crate::trial::{Direction, FrozenTrial, TrialState};
use std::cmp::Ordering;

/// A value as a loss (smaller is better); NaN counts as the worst value.
fn as_loss(value: f64, direction: Direction) -> f64 {
    if value.is_nan() {
        return f64::INFINITY;
    }
    match direction {
        Direction::Minimize => value,
        Direction::Maximize => -value,
    }
}

/// Does `a` Pareto-dominate `b`: no worse in every objective and better in at
/// least one? Equal vectors do not dominate each other. Vectors whose length
/// differs from `directions` dominate nothing.
pub fn dominates(a: &[f64], b: &[f64], directions: &[Direction]) -> bool {
    if a.len() != directions.len() || b.len() != directions.len() {
        return false;
    }
    let mut strictly_better = false;
    for ((&x, &y), &direction) in a.iter().zip(b).zip(directions) {
        let (x, y) = (as_loss(x, direction), as_loss(y, direction));
        if x > y {
            return false;
        }
        if x < y {
            strictly_better = true;
        }
    }
    strictly_better
}

/// Constrained domination (Deb et al.; Optuna's `_constrained_dominates`).
/// A violation is the sum of the positive constraint values: 0 means
/// feasible. A feasible point beats an infeasible one, of two infeasible points
/// the one with the smaller violation wins, and two feasible points compare by
/// [`dominates`]. NaN violations count as infinite.
pub fn constrained_dominates(
    a: &[f64],
    a_violation: f64,
    b: &[f64],
    b_violation: f64,
    directions: &[Direction],
) -> bool {
    let a_violation = if a_violation.is_nan() { f64::INFINITY } else { a_violation };
    let b_violation = if b_violation.is_nan() { f64::INFINITY } else { b_violation };
    match (a_violation <= 0.0, b_violation <= 0.0) {
        (true, true) => dominates(a, b, directions),
        (true, false) => true,
        (false, true) => false,
        (false, false) => a_violation < b_violation,
    }
}

/// Deb's fast non-dominated sort. Returns the fronts, best first; each front
/// lists indices into `values` in increasing order. With `violations`
/// (one per point, see [`constrained_dominates`]) feasible points fill the
/// first fronts and infeasible ones follow, ranked by their violation.
pub fn fast_non_dominated_sort<V: AsRef<[f64]>>(
    values: &[V],
    violations: Option<&[f64]>,
    directions: &[Direction],
) -> Vec<Vec<usize>> {
    let n = values.len();
    let beats = |i: usize, j: usize| match violations {
        None => dominates(values[i].as_ref(), values[j].as_ref(), directions),
        Some(v) => constrained_dominates(values[i].as_ref(), v[i], values[j].as_ref(), v[j], directions),
    };
    let mut dominated: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut dominator_count = vec![0usize; n];
    for i in 0..n {
        for j in i + 1..n {
            if beats(i, j) {
                dominated[i].push(j);
                dominator_count[j] += 1;
            } else if beats(j, i) {
                dominated[j].push(i);
                dominator_count[i] += 1;
            }
        }
    }
    let mut fronts = Vec::new();
    let mut current: Vec<usize> = (0..n).filter(|&i| dominator_count[i] == 0).collect();
    while !current.is_empty() {
        let mut next = Vec::new();
        for &i in &current {
            for &j in &dominated[i] {
                dominator_count[j] -= 1;
                if dominator_count[j] == 0 {
                    next.push(j);
                }
            }
        }
        next.sort_unstable();
        fronts.push(std::mem::replace(&mut current, next));
    }
    fronts
}

/// The rank (0 = first front) of every point; see [`fast_non_dominated_sort`].
pub fn non_domination_ranks<V: AsRef<[f64]>>(
    values: &[V],
    violations: Option<&[f64]>,
    directions: &[Direction],
) -> Vec<usize> {
    let mut ranks = vec![0; values.len()];
    for (rank, front) in fast_non_dominated_sort(values, violations, directions).iter().enumerate() {
        for &i in front {
            ranks[i] = rank;
        }
    }
    ranks
}

fn cmp_f64(a: f64, b: f64) -> Ordering {
    a.partial_cmp(&b).unwrap_or(Ordering::Equal)
}

/// Crowding distances and Optuna's order of the points (most isolated first).
fn crowding<V: AsRef<[f64]>>(values: &[V]) -> (Vec<f64>, Vec<usize>) {
    let n = values.len();
    let mut distance = vec![0.0; n];
    let mut order: Vec<usize> = (0..n).collect();
    let n_objectives = values.first().map_or(0, |v| v.as_ref().len());
    for objective in 0..n_objectives {
        // NaN (or a missing value) sorts as the worst, +inf.
        let value =
            |i: usize| values[i].as_ref().get(objective).copied().filter(|v| !v.is_nan()).unwrap_or(f64::INFINITY);
        // Stable sorts one objective after another, as Optuna sorts its list
        // in place: the final order decides ties below.
        order.sort_by(|&a, &b| cmp_f64(value(a), value(b)));
        let sorted: Vec<f64> = order.iter().map(|&i| value(i)).collect();
        if sorted[0] == sorted[n - 1] {
            continue;
        }
        let lowest = sorted.iter().copied().find(|&v| v != f64::NEG_INFINITY).unwrap_or(f64::INFINITY);
        let highest = sorted.iter().rev().copied().find(|&v| v != f64::INFINITY).unwrap_or(f64::NEG_INFINITY);
        let mut width = highest - lowest;
        if width.is_nan() || width <= 0.0 {
            width = 1.0;
        }
        for (k, &i) in order.iter().enumerate() {
            let below = if k == 0 { f64::NEG_INFINITY } else { sorted[k - 1] };
            let above = if k + 1 == n { f64::INFINITY } else { sorted[k + 1] };
            let gap = if below == above { 0.0 } else { above - below };
            distance[i] += gap / width;
        }
    }
    // Optuna sorts by distance (stable, ascending) and reverses the list.
    order.sort_by(|&a, &b| cmp_f64(distance[a], distance[b]));
    order.reverse();
    (distance, order)
}

/// Crowding distance of every point (Optuna's definition): per objective the
/// points are sorted, each gets the gap between its two neighbours divided by
/// the objective's finite range, and the gaps are summed. The extreme points of
/// an objective get an infinite distance; an objective on which all points are
/// equal adds nothing.
pub fn crowding_distance<V: AsRef<[f64]>>(values: &[V]) -> Vec<f64> {
    crowding(values).0
}

/// Indices of `values` from the most to the least isolated (descending
/// crowding distance, ties broken exactly as Optuna's in-place sorts do).
pub fn crowding_distance_order<V: AsRef<[f64]>>(values: &[V]) -> Vec<usize> {
    crowding(values).1
}

/// Constraint violation of a trial for constrained sorting: the sum of its
/// positive constraint values; infinite when a constraint is NaN or the trial
/// has no constraint values (Optuna: "it will be dominated by the other
/// trials").
pub fn trial_violation(trial: &FrozenTrial) -> f64 {
    match trial.constraints() {
        None => f64::INFINITY,
        Some(c) if c.iter().any(|v| v.is_nan()) => f64::INFINITY,
        Some(c) => c.iter().map(|v| v.max(0.0)).sum(),
    }
}

/// Violations of the trials when any of them carries constraint values (the
/// study is then a constrained one), `None` otherwise.
pub fn violations<'a>(trials: impl IntoIterator<Item = &'a FrozenTrial> + Clone) -> Option<Vec<f64>> {
    let constrained = trials.clone().into_iter().any(|t| t.constraints().is_some());
    constrained.then(|| trials.into_iter().map(trial_violation).collect())
}

/// Is this trial COMPLETE with one value per objective?
pub(crate) fn is_evaluated(trial: &FrozenTrial, directions: &[Direction]) -> bool {
    trial.state == TrialState::Complete && trial.values.as_ref().is_some_and(|v| v.len() == directions.len())
}

/// The Pareto-optimal trials among the COMPLETE ones (in trial order). When
/// any complete trial carries constraint values only feasible trials count.
/// Trials with equal values are all kept.
pub fn pareto_front<'a>(trials: &'a [FrozenTrial], directions: &[Direction]) -> Vec<&'a FrozenTrial> {
    let mut candidates: Vec<&FrozenTrial> = trials.iter().filter(|t| is_evaluated(t, directions)).collect();
    if candidates.iter().any(|t| t.constraints().is_some()) {
        candidates.retain(|t| trial_violation(t) <= 0.0);
    }
    let values: Vec<&[f64]> = candidates.iter().map(|t| t.values.as_deref().unwrap_or_default()).collect();
    match fast_non_dominated_sort(&values, None, directions).first() {
        Some(front) => front.iter().map(|&i| candidates[i]).collect(),
        None => Vec::new(),
    }
}

/// Area dominated by `points` (2 objectives) and bounded by `reference`.
/// Points that do not strictly beat the reference in both objectives add
/// nothing. Directions say which way is better, as everywhere else.
pub fn hypervolume_2d<V: AsRef<[f64]>>(points: &[V], reference: [f64; 2], directions: [Direction; 2]) -> f64 {
    let reference = [as_loss(reference[0], directions[0]), as_loss(reference[1], directions[1])];
    let mut losses: Vec<[f64; 2]> = points
        .iter()
        .filter_map(|p| {
            let p = p.as_ref();
            (p.len() == 2).then(|| [as_loss(p[0], directions[0]), as_loss(p[1], directions[1])])
        })
        .filter(|p| p[0] < reference[0] && p[1] < reference[1])
        .collect();
    losses.sort_by(|a, b| cmp_f64(a[0], b[0]).then(cmp_f64(a[1], b[1])));
    let mut volume = 0.0;
    let mut ceiling = reference[1];
    for [x, y] in losses {
        if y < ceiling {
            volume += (reference[0] - x) * (ceiling - y);
            ceiling = y;
        }
    }
    volume
}

/// Hypervolume of loss vectors (every objective minimised) bounded by
/// `reference`, in any number of objectives: the volume of the union of the
/// boxes `[p, reference]`. Points not strictly below the reference in every
/// objective add nothing. Slices along the last objective, so it is meant
/// for the few dozen points a sampler weighs, not for huge fronts.
pub fn hypervolume_losses<V: AsRef<[f64]>>(points: &[V], reference: &[f64]) -> f64 {
    let d = reference.len();
    let mut inside: Vec<&[f64]> = points
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| p.len() == d && p.iter().zip(reference).all(|(x, r)| x < r))
        .collect();
    if inside.is_empty() || d == 0 {
        return 0.0;
    }
    if d == 1 {
        return reference[0] - inside.iter().map(|p| p[0]).fold(f64::INFINITY, f64::min);
    }
    if d == 2 {
        inside.sort_by(|a, b| cmp_f64(a[0], b[0]).then(cmp_f64(a[1], b[1])));
        let (mut volume, mut ceiling) = (0.0, reference[1]);
        for p in inside {
            if p[1] < ceiling {
                volume += (reference[0] - p[0]) * (ceiling - p[1]);
                ceiling = p[1];
            }
        }
        return volume;
    }
    inside.sort_by(|a, b| cmp_f64(a[d - 1], b[d - 1]));
    let mut volume = 0.0;
    for i in 0..inside.len() {
        let top = inside.get(i + 1).map_or(reference[d - 1], |p| p[d - 1]);
        let height = top - inside[i][d - 1];
        if height > 0.0 {
            let slice: Vec<&[f64]> = inside[..=i].iter().map(|p| &p[..d - 1]).collect();
            volume += height * hypervolume_losses(&slice, &reference[..d - 1]);
        }
    }
    volume
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::{Maximize as Max, Minimize as Min};
    use serde_json::json;
    use std::collections::BTreeMap;

    const MIN2: [Direction; 2] = [Min, Min];

    fn trial(number: u64, state: TrialState, values: Option<Vec<f64>>, constraints: Option<Vec<f64>>) -> FrozenTrial {
        let mut system_attrs = BTreeMap::new();
        if let Some(c) = constraints {
            system_attrs.insert(super::super::CONSTRAINTS_KEY.to_string(), json!(c));
        }
        FrozenTrial {
            id: number as i64,
            number,
            state,
            params: BTreeMap::new(),
            values,
            user_attrs: BTreeMap::new(),
            system_attrs,
            datetime_start: None,
            datetime_complete: None,
        }
    }

    #[test]
    fn domination_basics() {
        assert!(dominates(&[1.0, 1.0], &[2.0, 2.0], &MIN2));
        assert!(dominates(&[1.0, 1.0], &[1.0, 2.0], &MIN2));
        assert!(!dominates(&[1.0, 2.0], &[1.0, 2.0], &MIN2), "equal points");
        assert!(!dominates(&[1.0, 3.0], &[2.0, 2.0], &MIN2), "trade-off");
        assert!(!dominates(&[2.0, 2.0], &[1.0, 1.0], &MIN2));
        // Maximize the first objective, minimize the second.
        assert!(dominates(&[3.0, 1.0], &[2.0, 1.0], &[Max, Min]));
        assert!(!dominates(&[2.0, 1.0], &[3.0, 1.0], &[Max, Min]));
        // NaN is the worst value.
        assert!(dominates(&[1.0, 1.0], &[1.0, f64::NAN], &MIN2));
        assert!(!dominates(&[1.0, f64::NAN], &[1.0, 1.0], &MIN2));
        // Wrong lengths dominate nothing.
        assert!(!dominates(&[0.0], &[1.0, 1.0], &MIN2));
    }

    #[test]
    fn constrained_domination() {
        let good = [1.0, 1.0];
        let bad = [5.0, 5.0];
        // Feasible beats infeasible whatever the values.
        assert!(constrained_dominates(&bad, 0.0, &good, 0.1, &MIN2));
        assert!(!constrained_dominates(&good, 0.1, &bad, 0.0, &MIN2));
        // Two infeasible: the smaller violation wins, values ignored.
        assert!(constrained_dominates(&bad, 1.0, &good, 2.0, &MIN2));
        assert!(!constrained_dominates(&good, 2.0, &bad, 1.0, &MIN2));
        assert!(!constrained_dominates(&good, 2.0, &bad, 2.0, &MIN2));
        // Two feasible: plain domination.
        assert!(constrained_dominates(&good, 0.0, &bad, 0.0, &MIN2));
        assert!(!constrained_dominates(&bad, 0.0, &good, 0.0, &MIN2));
        // NaN violation counts as infinite.
        assert!(constrained_dominates(&bad, 1e9, &good, f64::NAN, &MIN2));
    }

    #[test]
    fn fronts_of_a_hand_made_set() {
        // Minimize both. Front 0: (1,5) (2,3) (4,1); front 1: (3,4) (5,2);
        // front 2: (5,5). (2,3) is duplicated and both copies sit in front 0.
        let points = [
            vec![3.0, 4.0], // 0
            vec![1.0, 5.0], // 1
            vec![5.0, 5.0], // 2
            vec![2.0, 3.0], // 3
            vec![5.0, 2.0], // 4
            vec![4.0, 1.0], // 5
            vec![2.0, 3.0], // 6 duplicate of 3
        ];
        assert_eq!(fast_non_dominated_sort(&points, None, &MIN2), vec![vec![1, 3, 5, 6], vec![0, 4], vec![2]]);
        assert_eq!(non_domination_ranks(&points, None, &MIN2), vec![1, 0, 2, 0, 1, 0, 0]);
    }

    #[test]
    fn fronts_with_mixed_directions() {
        // Maximize accuracy, minimize cost.
        let points = [
            vec![0.9, 10.0],  // 0: front 0
            vec![0.8, 5.0],   // 1: front 0
            vec![0.8, 12.0],  // 2: dominated by 0 and 1 → front 1
            vec![0.95, 20.0], // 3: front 0
            vec![0.7, 5.0],   // 4: dominated by 1 → front 1
            vec![0.6, 30.0],  // 5: dominated by everything → front 2
        ];
        let fronts = fast_non_dominated_sort(&points, None, &[Max, Min]);
        assert_eq!(fronts, vec![vec![0, 1, 3], vec![2, 4], vec![5]]);
        // Flipping the directions turns the order round.
        let fronts = fast_non_dominated_sort(&points, None, &[Min, Max]);
        assert_eq!(fronts[0], vec![5]);
    }

    #[test]
    fn fronts_with_constraints() {
        let points = [
            vec![1.0, 1.0], // 0: infeasible 2.0
            vec![5.0, 5.0], // 1: feasible
            vec![6.0, 4.0], // 2: feasible
            vec![6.0, 6.0], // 3: feasible, dominated by 1
            vec![0.0, 0.0], // 4: infeasible 0.5
            vec![0.0, 0.0], // 5: infeasible 2.0 (ties with 0)
            vec![0.0, 0.0], // 6: no constraints → infinite
        ];
        let violations = [2.0, 0.0, 0.0, 0.0, 0.5, 2.0, f64::INFINITY];
        assert_eq!(
            fast_non_dominated_sort(&points, Some(&violations), &MIN2),
            vec![vec![1, 2], vec![3], vec![4], vec![0, 5], vec![6]]
        );
    }

    #[test]
    fn crowding_distance_by_hand() {
        // A front of four points, minimize both: (0,4) (1,2) (3,1) (4,0).
        // Objective 0: range 4; inner gaps (3-0)/4 and (4-1)/4.
        // Objective 1: range 4; (1,2) gets (4-1)/4, (3,1) gets (2-0)/4.
        let front = [vec![1.0, 2.0], vec![0.0, 4.0], vec![3.0, 1.0], vec![4.0, 0.0]];
        let d = crowding_distance(&front);
        assert_eq!(d[0], 0.75 + 0.75);
        assert_eq!(d[2], 0.75 + 0.5);
        assert!(d[1].is_infinite() && d[3].is_infinite());
        let order = crowding_distance_order(&front);
        assert_eq!(&order[2..], &[0, 2]);
        assert!(order[..2].contains(&1) && order[..2].contains(&3));
    }

    #[test]
    fn crowding_distance_duplicates_and_flat_objectives() {
        // Objective 0: values 0, 5, 5, 10 (width 10); objective 1 is flat.
        // Sorted: 0 | 5 | 5 | 10 → inf, (5-0)/10, (10-5)/10, inf.
        let points = [vec![5.0, 1.0], vec![0.0, 1.0], vec![10.0, 1.0], vec![5.0, 1.0]];
        let d = crowding_distance(&points);
        assert_eq!(d[0], 0.5);
        assert_eq!(d[3], 0.5);
        assert!(d[1].is_infinite() && d[2].is_infinite());
        // All points equal: every distance is 0.
        assert_eq!(crowding_distance(&[vec![1.0, 1.0], vec![1.0, 1.0]]), vec![0.0, 0.0]);
        // Three points on one objective: 0, 1, 4 → middle gets 4/4.
        assert_eq!(crowding_distance(&[vec![0.0], vec![1.0], vec![4.0]])[1], 1.0);
        assert!(crowding_distance::<Vec<f64>>(&[]).is_empty());
    }

    #[test]
    fn crowding_distance_with_infinite_values() {
        // Values -inf, 0, 2, inf: every point has an infinite neighbour gap.
        let points = [vec![f64::NEG_INFINITY], vec![0.0], vec![2.0], vec![f64::INFINITY]];
        assert!(crowding_distance(&points).iter().all(|v| v.is_infinite()));
        // Values 0, 1, inf, inf (finite range 1): the last point sits between
        // inf and the +inf sentinel, and inf - inf counts as a zero gap.
        let points = [vec![0.0], vec![1.0], vec![f64::INFINITY], vec![f64::INFINITY]];
        let d = crowding_distance(&points);
        assert_eq!(d[..3], [f64::INFINITY; 3]);
        assert_eq!(d[3], 0.0);
    }

    #[test]
    fn pareto_front_of_trials() {
        use TrialState::*;
        let trials = vec![
            trial(0, Complete, Some(vec![1.0, 5.0]), None),
            trial(1, Complete, Some(vec![3.0, 3.0]), None),
            trial(2, Complete, Some(vec![4.0, 4.0]), None), // dominated by 1
            trial(3, Fail, Some(vec![0.0, 0.0]), None),     // not complete
            trial(4, Running, None, None),
            trial(5, Complete, Some(vec![3.0, 3.0]), None), // duplicate of 1
            trial(6, Complete, Some(vec![0.0]), None),      // wrong length
            trial(7, Pruned, Some(vec![0.0, 0.0]), None),
        ];
        let numbers: Vec<u64> = pareto_front(&trials, &MIN2).iter().map(|t| t.number).collect();
        assert_eq!(numbers, vec![0, 1, 5]);
        // Maximizing the second objective instead.
        let numbers: Vec<u64> = pareto_front(&trials, &[Min, Max]).iter().map(|t| t.number).collect();
        assert_eq!(numbers, vec![0]);
        assert!(pareto_front(&[], &MIN2).is_empty());
    }

    #[test]
    fn pareto_front_with_constraints_keeps_feasible_trials() {
        use TrialState::*;
        let trials = vec![
            trial(0, Complete, Some(vec![0.0, 0.0]), Some(vec![1.0])), // best but infeasible
            trial(1, Complete, Some(vec![2.0, 2.0]), Some(vec![0.0, -1.0])),
            trial(2, Complete, Some(vec![3.0, 3.0]), Some(vec![-1.0])), // dominated by 1
            trial(3, Complete, Some(vec![1.0, 4.0]), Some(vec![-0.5])),
            trial(4, Complete, Some(vec![0.0, 1.0]), None), // no constraints: infeasible
        ];
        let numbers: Vec<u64> = pareto_front(&trials, &MIN2).iter().map(|t| t.number).collect();
        assert_eq!(numbers, vec![1, 3]);
        assert_eq!(violations(&trials), Some(vec![1.0, 0.0, 0.0, 0.0, f64::INFINITY]));
        assert_eq!(violations(&trials[4..]), None);
    }

    #[test]
    fn hypervolume_by_hand() {
        // Minimize both, reference (4,4); points (1,3) (2,2) (3,1):
        // sweep: (4-1)*(4-3)=3, (4-2)*(3-2)=2, (4-3)*(2-1)=1 → 6.
        let points = [vec![2.0, 2.0], vec![1.0, 3.0], vec![3.0, 1.0]];
        assert_eq!(hypervolume_2d(&points, [4.0, 4.0], MIN2), 6.0);
        // Dominated points, duplicates and points beyond the reference add nothing.
        let more = [
            vec![2.0, 2.0],
            vec![1.0, 3.0],
            vec![3.0, 1.0],
            vec![3.0, 3.0],
            vec![2.0, 2.0],
            vec![5.0, 0.0],
            vec![0.0, 4.0],
        ];
        assert_eq!(hypervolume_2d(&more, [4.0, 4.0], MIN2), 6.0);
        // Maximize the first objective: mirror x → -x.
        let mirrored = [vec![-2.0, 2.0], vec![-1.0, 3.0], vec![-3.0, 1.0]];
        assert_eq!(hypervolume_2d(&mirrored, [-4.0, 4.0], [Max, Min]), 6.0);
        assert_eq!(hypervolume_2d::<Vec<f64>>(&[], [1.0, 1.0], MIN2), 0.0);
    }
}
