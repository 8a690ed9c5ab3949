//! The DAG as an inline SVG, laid out here so the report needs no Graphviz and
//! no network: each stage sits in the column of its longest path from a source
//! (inputs always left of their readers), rows in declaration order, edges as
//! curves from an input's right side to its reader's left side. Every name is
//! escaped; each box carries its stage's state as a CSS class and a tooltip.

use std::fmt::Write as _;

use super::html::escape;

/// A node of the drawing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The stage instance name.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// Its state's CSS class and words (`cached`, `stale`, `never-run`, `blocked`).
    pub state: String,
}

/// Pixel geometry.
const ROW: usize = 62;
const BOX_H: usize = 44;
const GAP: usize = 70;
const CHAR_W: usize = 7;
const PAD: usize = 10;

/// Column of each node: 0 for stages without inputs, else one more than its inputs' maximum.
/// `order` is a topological order of node indices.
#[must_use]
pub fn layers(n: usize, edges: &[(usize, usize)], order: &[usize]) -> Vec<usize> {
    let mut layer = vec![0; n];
    for &i in order {
        layer[i] = edges.iter().filter(|&&(_, to)| to == i).map(|&(from, _)| layer[from] + 1).max().unwrap_or(0);
    }
    layer
}

/// The SVG: boxes in their columns, edges with arrow heads.
#[must_use]
pub fn svg(nodes: &[Node], edges: &[(usize, usize)], order: &[usize]) -> String {
    let layer = layers(nodes.len(), edges, order);
    let columns = layer.iter().max().map_or(0, |m| m + 1);
    let width_of =
        |i: usize| nodes[i].name.chars().count().max(nodes[i].kind.len() + nodes[i].state.len() + 3) * CHAR_W + 2 * PAD;
    let col_w: Vec<usize> =
        (0..columns).map(|c| (0..nodes.len()).filter(|&i| layer[i] == c).map(width_of).max().unwrap_or(0)).collect();
    let col_x: Vec<usize> = col_w.iter().scan(PAD, |x, w| Some(std::mem::replace(x, *x + w + GAP))).collect();
    let mut rows = vec![0; columns];
    let mut pos = vec![(0, 0); nodes.len()];
    for i in 0..nodes.len() {
        pos[i] = (col_x[layer[i]], PAD + rows[layer[i]] * ROW);
        rows[layer[i]] += 1;
    }
    let w = col_x.last().zip(col_w.last()).map_or(2 * PAD, |(x, cw)| x + cw + PAD);
    let h = rows.iter().max().copied().unwrap_or(0) * ROW + PAD;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"dag\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"stage graph\">\n\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#555\"/></marker></defs>\n"
    );
    for &(from, to) in edges {
        let (x1, y1) = (pos[from].0 + col_w[layer[from]], pos[from].1 + BOX_H / 2);
        let (x2, y2) = (pos[to].0, pos[to].1 + BOX_H / 2);
        let mid = usize::midpoint(x1, x2);
        let _ = writeln!(
            out,
            "<path class=\"edge\" d=\"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}\" marker-end=\"url(#arrow)\"/>"
        );
    }
    for (i, node) in nodes.iter().enumerate() {
        let (x, y) = pos[i];
        let (name, kind, state) = (escape(&node.name), escape(&node.kind), escape(&node.state));
        let _ = writeln!(
            out,
            "<g class=\"node {state}\"><title>{name} ({kind}): {state}</title><rect x=\"{x}\" y=\"{y}\" width=\"{}\" height=\"{BOX_H}\" rx=\"6\"/>\
             <text x=\"{}\" y=\"{}\" class=\"name\">{name}</text><text x=\"{}\" y=\"{}\" class=\"kind\">{kind} · {state}</text></g>",
            col_w[layer[i]],
            x + PAD,
            y + 18,
            x + PAD,
            y + 36
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> Node {
        Node { name: name.into(), kind: "train".into(), state: "cached".into() }
    }

    #[test]
    fn a_stage_sits_right_of_all_its_inputs() {
        // 0 -> 1 -> 3, 0 -> 3, 2 alone; declared out of topological order.
        let edges = [(0, 1), (1, 3), (0, 3)];
        assert_eq!(layers(4, &edges, &[0, 2, 1, 3]), vec![0, 1, 0, 2]);
    }

    #[test]
    fn the_svg_escapes_names_and_draws_every_edge() {
        let nodes = [node("a<b>&\"c\""), node("m[w=min_snr { gamma = 5 }]")];
        let out = svg(&nodes, &[(0, 1)], &[0, 1]);
        assert!(out.contains("a&lt;b&gt;&amp;&quot;c&quot;") && !out.contains("a<b>"));
        assert_eq!(out.matches("class=\"edge\"").count(), 1);
        assert_eq!(out.matches("<g class=\"node cached\">").count(), 2);
        assert!(out.starts_with("<svg") && out.ends_with("</svg>"));
        assert!(svg(&[], &[], &[]).contains("width=\"20\""), "an empty graph is still an svg");
    }
}
