//! The template routes of one table as a segment trie, so a lookup costs the path's
//! segments, not the number of routes.
//!
//! A node has literal children by segment text and at most one parameter child. The
//! candidates of a template end at the node its last segment reaches; all of them share
//! the node's shape (which segments are literal), so a node's precedence against the others
//! is one number, `rank`, fixed at build time: more literal segments first, then a literal
//! earlier in the path (rules 3 of the router). Two nodes that can match the same path have
//! the same depth and therefore a well-defined order; two nodes of equal rank cannot both
//! match one path (they would have the same literals in the same places, so be one node).

use std::cmp::Reverse;
use std::collections::HashMap;

use switchyard_compile::path_template::Segment;

use super::{AllowedMethods, Candidate, PathMatcher, RequestView, first_match};

#[derive(Default)]
pub(super) struct TemplateTrie {
    root: Node,
}

#[derive(Default)]
struct Node {
    literals: HashMap<Box<str>, Node>,
    param: Option<Box<Node>>,
    /// Templates ending here, in precedence order (matchers, methods, age).
    ends: Vec<Candidate>,
    /// Order among nodes with templates ending here; smaller wins.
    rank: u32,
}

/// The best candidate found so far in one walk.
struct Best<'t> {
    rank: u32,
    candidate: &'t Candidate,
}

impl TemplateTrie {
    pub(super) fn insert(&mut self, candidate: Candidate) {
        let PathMatcher::Template(segments) = &candidate.path else { return };
        let mut node = &mut self.root;
        for segment in segments {
            node = match segment {
                Segment::Literal(text) => node.literals.entry(text.as_str().into()).or_default(),
                Segment::Param(_) => node.param.get_or_insert_with(Box::default),
            };
        }
        node.ends.push(candidate);
    }

    /// Sorts each node's candidates and ranks the nodes against each other.
    pub(super) fn finish(&mut self) {
        let mut keys: Vec<(Reverse<usize>, Vec<u8>)> = Vec::new();
        self.root.visit_mut(&mut |node| {
            node.ends.sort_by(|a, b| a.precedence.cmp(&b.precedence));
            // Most nodes end one template; a push left room for four.
            node.ends.shrink_to_fit();
            let (specificity, shape) = node.key();
            keys.push((specificity, shape.to_vec()));
        });
        keys.sort_unstable();
        // Nodes of one shape share a rank (they never match the same path).
        keys.dedup();
        self.root.visit_mut(&mut |node| {
            let key = node.key();
            let rank = keys.binary_search_by(|(specificity, shape)| (*specificity, shape.as_slice()).cmp(&key)).unwrap_or(keys.len());
            node.rank = u32::try_from(rank).unwrap_or(u32::MAX);
        });
    }

    /// The best template candidate matching the request, or `None`; candidates that match
    /// everything but the method are added to `allowed`.
    pub(super) fn find<'t>(
        &'t self,
        request: &RequestView<'_>,
        method_mismatch: &mut bool,
        allowed: &mut AllowedMethods,
    ) -> Option<&'t Candidate> {
        let rest = request.path.strip_prefix('/')?;
        let mut best = None;
        self.root.walk(Some(rest), request, &mut best, method_mismatch, allowed);
        best.map(|b| b.candidate)
    }
}

impl Node {
    /// Calls `f` on every node where templates end.
    fn visit_mut(&mut self, f: &mut impl FnMut(&mut Node)) {
        for child in self.literals.values_mut() {
            child.visit_mut(f);
        }
        if let Some(child) = &mut self.param {
            child.visit_mut(f);
        }
        if !self.ends.is_empty() {
            f(self);
        }
    }

    /// The node's place in template precedence: every candidate ending here has the
    /// node's literal count and shape, so the first one's precedence speaks for the node.
    fn key(&self) -> (Reverse<usize>, &[u8]) {
        let precedence = &self.ends[0].precedence;
        (precedence.specificity, &precedence.shape)
    }

    /// `rest` is the path after the segments consumed so far (`None` once all are).
    fn walk<'t>(
        &'t self,
        rest: Option<&str>,
        request: &RequestView<'_>,
        best: &mut Option<Best<'t>>,
        method_mismatch: &mut bool,
        allowed: &mut AllowedMethods,
    ) {
        let Some(rest) = rest else {
            self.offer(request, best, method_mismatch, allowed);
            return;
        };
        let (part, after) = match rest.split_once('/') {
            Some((part, after)) => (part, Some(after)),
            None => (rest, None),
        };
        if let Some(child) = self.literals.get(part) {
            child.walk(after, request, best, method_mismatch, allowed);
        }
        if let Some(child) = &self.param
            && !part.is_empty()
        {
            child.walk(after, request, best, method_mismatch, allowed);
        }
    }

    /// Tries the candidates ending here unless a better node already matched.
    fn offer<'t>(
        &'t self,
        request: &RequestView<'_>,
        best: &mut Option<Best<'t>>,
        method_mismatch: &mut bool,
        allowed: &mut AllowedMethods,
    ) {
        if self.ends.is_empty() || best.as_ref().is_some_and(|b| b.rank < self.rank) {
            return;
        }
        if let Some(candidate) = first_match(&self.ends, request, method_mismatch, allowed) {
            *best = Some(Best { rank: self.rank, candidate });
        }
    }
}
