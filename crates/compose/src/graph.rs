//! The call graph of an endpoint: which call reads which other calls' responses. Checked at
//! config load (a cycle is an error that names its calls), and used per request by
//! [`Schedule`] to start every call the moment the last call it depends on has completed —
//! not in waves — so an endpoint takes as long as its longest chain.

use std::time::Duration;

/// Dependencies between the calls of one endpoint, by call index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Graph {
    deps: Vec<Vec<usize>>,
    dependents: Vec<Vec<usize>>,
}

/// A dependency cycle: call indexes where each reads the next one's response (the first is
/// repeated at the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle(pub Vec<usize>);

impl Graph {
    /// Builds the graph from each call's dependencies; fails on the first cycle found.
    pub fn new(deps: Vec<Vec<usize>>) -> Result<Self, Cycle> {
        let mut dependents = vec![Vec::new(); deps.len()];
        for (call, its_deps) in deps.iter().enumerate() {
            for &dep in its_deps {
                if let Some(list) = dependents.get_mut(dep) {
                    list.push(call);
                }
            }
        }
        let graph = Self { deps, dependents };
        match graph.find_cycle() {
            Some(cycle) => Err(cycle),
            None => Ok(graph),
        }
    }

    /// How many calls the graph has.
    pub fn len(&self) -> usize {
        self.deps.len()
    }

    /// True for an endpoint without calls.
    pub fn is_empty(&self) -> bool {
        self.deps.is_empty()
    }

    /// The calls `call` reads from.
    pub fn deps(&self, call: usize) -> &[usize] {
        self.deps.get(call).map_or(&[], Vec::as_slice)
    }

    /// The calls that read from `call`.
    pub fn dependents(&self, call: usize) -> &[usize] {
        self.dependents.get(call).map_or(&[], Vec::as_slice)
    }

    /// The duration of the critical path if every call took `cost(call)`; without dependencies
    /// (the common case) simply the slowest call, with no allocation.
    pub fn critical_path(&self, cost: impl Fn(usize) -> Duration) -> Duration {
        if self.deps.iter().all(Vec::is_empty) {
            return (0..self.len()).map(cost).max().unwrap_or(Duration::ZERO);
        }
        self.longest_chain(cost).0
    }

    /// The slowest chain if every call took `cost(call)`: its total and its calls, in order.
    pub fn longest_chain(&self, cost: impl Fn(usize) -> Duration) -> (Duration, Vec<usize>) {
        // Calls in dependency order: a call comes after everything it reads from.
        let mut best: Vec<Option<(Duration, Option<usize>)>> = vec![None; self.len()];
        let mut order = Vec::with_capacity(self.len());
        let mut schedule = Schedule::new(self);
        let mut ready: Vec<usize> = schedule.roots().collect();
        while let Some(call) = ready.pop() {
            order.push(call);
            ready.extend(schedule.complete(call));
        }
        for &call in &order {
            let before = self.deps(call).iter().filter_map(|&d| best[d].map(|(t, _)| (t, d))).max();
            let start = before.map_or(Duration::ZERO, |(t, _)| t);
            best[call] = Some((start + cost(call), before.map(|(_, d)| d)));
        }
        let Some(last) = (0..self.len()).max_by_key(|&c| best[c].map(|(t, _)| t)) else {
            return (Duration::ZERO, Vec::new());
        };
        let mut chain = vec![last];
        while let Some(Some((_, Some(previous)))) = chain.last().map(|&c| best[c]) {
            chain.push(previous);
        }
        chain.reverse();
        (best[last].map_or(Duration::ZERO, |(t, _)| t), chain)
    }

    fn find_cycle(&self) -> Option<Cycle> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        let mut marks = vec![Mark::New; self.len()];
        for start in 0..self.len() {
            if marks[start] != Mark::New {
                continue;
            }
            // Depth-first with an explicit stack of (call, next dependency to visit).
            let mut path = vec![(start, 0)];
            marks[start] = Mark::OnPath;
            while let Some(&mut (call, ref mut next)) = path.last_mut() {
                match self.deps(call).get(*next).copied() {
                    Some(dep) => {
                        *next += 1;
                        match marks.get(dep).copied() {
                            Some(Mark::New) => {
                                marks[dep] = Mark::OnPath;
                                path.push((dep, 0));
                            }
                            Some(Mark::OnPath) => {
                                let from = path.iter().position(|&(c, _)| c == dep).unwrap_or(0);
                                let mut cycle: Vec<usize> = path[from..].iter().map(|&(c, _)| c).collect();
                                cycle.push(dep);
                                return Some(Cycle(cycle));
                            }
                            _ => {}
                        }
                    }
                    None => {
                        marks[call] = Mark::Done;
                        path.pop();
                    }
                }
            }
        }
        None
    }
}

/// Per-request bookkeeping: how many dependencies each call still waits for.
#[derive(Debug, Clone)]
pub struct Schedule<'g> {
    graph: &'g Graph,
    /// Per call; empty when no call has a dependency (nothing to count, nothing allocated).
    waiting: Vec<usize>,
}

impl<'g> Schedule<'g> {
    /// Every call waiting for all its dependencies.
    pub fn new(graph: &'g Graph) -> Self {
        let waiting = if graph.deps.iter().all(Vec::is_empty) {
            Vec::new()
        } else {
            graph.deps.iter().map(Vec::len).collect()
        };
        Self { graph, waiting }
    }

    /// The calls that can start at once.
    pub fn roots(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.graph.len()).filter(|&call| self.waiting.get(call).is_none_or(|w| *w == 0))
    }

    /// Records that `call` completed; returns the calls that became ready because of it.
    pub fn complete(&mut self, call: usize) -> impl Iterator<Item = usize> + '_ {
        let waiting = &mut self.waiting;
        self.graph.dependents(call).iter().copied().filter(move |&dependent| {
            match waiting.get_mut(dependent) {
                Some(count) if *count > 0 => {
                    *count -= 1;
                    *count == 0
                }
                _ => false,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_each_call_when_its_last_dependency_completes() {
        // 0 → 2, 1 → 2, 0 → 3
        let graph = Graph::new(vec![vec![], vec![], vec![0, 1], vec![0]]).unwrap();
        let mut schedule = Schedule::new(&graph);
        assert_eq!(schedule.roots().collect::<Vec<_>>(), [0, 1]);
        assert_eq!(schedule.complete(0).collect::<Vec<_>>(), [3], "3 needs only 0; 2 still waits for 1");
        assert_eq!(schedule.complete(1).collect::<Vec<_>>(), [2]);
        assert_eq!(schedule.complete(3).count(), 0);
    }

    #[test]
    fn cycles_are_found_and_named_in_order() {
        assert_eq!(Graph::new(vec![vec![1], vec![2], vec![0]]), Err(Cycle(vec![0, 1, 2, 0])));
        assert_eq!(Graph::new(vec![vec![0]]), Err(Cycle(vec![0, 0])));
        assert_eq!(Graph::new(vec![vec![], vec![2], vec![1]]), Err(Cycle(vec![1, 2, 1])));
        assert!(Graph::new(vec![vec![], vec![0], vec![0, 1]]).is_ok());
    }

    #[test]
    fn longest_chain_follows_the_slowest_path() {
        let graph = Graph::new(vec![vec![], vec![], vec![0], vec![1, 2]]).unwrap();
        let ms = [100, 300, 250, 50];
        let (total, chain) = graph.longest_chain(|c| Duration::from_millis(ms[c]));
        assert_eq!(total, Duration::from_millis(400));
        assert_eq!(chain, [0, 2, 3]);
        assert_eq!(Graph::default().longest_chain(|_| Duration::ZERO), (Duration::ZERO, vec![]));
        assert_eq!(graph.critical_path(|c| Duration::from_millis(ms[c])), Duration::from_millis(400));
        let flat = Graph::new(vec![vec![], vec![], vec![]]).unwrap();
        assert_eq!(flat.critical_path(|c| Duration::from_millis(ms[c])), Duration::from_millis(300));
    }
}
