//! Integration tests: graph validation diagnostics (snapshots of the rendered
//! text) and the dot/mermaid renderings.

use msnr::graph::render::{render, Format};
use msnr::graph::Dag;
use msnr::lang;

fn snapshot(name: &str, text: &str) {
    insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!(name, text);
    });
}

fn dag_errors(text: &str) -> String {
    let pipeline = lang::load_str("cycle.msnr", text, &[]).unwrap_or_else(|d| panic!("{}", d.render_plain()));
    Dag::build(&pipeline).expect_err("the graph has a cycle").render_plain()
}

#[test]
fn a_cycle_is_reported_whole_with_every_reference_labelled() {
    let text = "stage a = crop { images = c, size = 8 }\nstage b = crop { images = a, size = 8 }\nstage c = crop { images = b, size = 8 }\nstage d = crop { images = a, size = 8 }\n";
    snapshot("graph_cycle_of_three", &dag_errors(text));
}

#[test]
fn a_stage_reading_itself_is_a_cycle() {
    snapshot("graph_self_cycle", &dag_errors("stage a = crop { images = a, size = 8 }\n"));
}

#[test]
fn two_separate_cycles_are_two_diagnostics() {
    let text = "stage a = crop { images = b, size = 8 }\nstage b = crop { images = a, size = 8 }\nstage c = crop { images = d, size = 8 }\nstage d = crop { images = c, size = 8 }\n";
    let rendered = dag_errors(text);
    assert_eq!(rendered.matches("msnr::dependency_cycle").count(), 2, "{rendered}");
}

#[test]
fn dot_and_mermaid_renderings() {
    let text = "stage d = mnist {}\nstage s = crop { images = d, recipe = adm {}, size = 16 }\nstage m = train { data = s, net = unet { channels = 32, mults = [1, 2] }, steps = 10 }\n";
    let pipeline = lang::load_str("p.msnr", text, &[]).unwrap_or_else(|d| panic!("{}", d.render_plain()));
    let dag = Dag::build(&pipeline).expect("acyclic");
    assert_eq!(dag.order(), &[0, 1, 2]);
    snapshot("graph_dot", &render(&pipeline, &dag, Format::Dot));
    snapshot("graph_mermaid", &render(&pipeline, &dag, Format::Mermaid));
}
