//! Static shapes: what each stage's output dataset will look like (channels,
//! size), inferred from parameters before anything runs, so `msnr check`
//! rejects a dataset that cannot fit its net and points at the parameter.

use crate::lang::{Diagnostic, Diagnostics, Pipeline, Stage, Value};
use crate::nets::check_net;

use super::Dag;

/// What is known about a stage's output before it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Channels, when known.
    pub channels: Option<u32>,
    /// Height and width, when known.
    pub size: Option<(u32, u32)>,
}

impl Shape {
    const UNKNOWN: Self = Self { channels: None, size: None };
}

/// Infers every stage's output shape in topological order and checks each
/// `train` stage's net against its data; all problems reported together.
///
/// # Errors
/// One diagnostic per train stage whose net cannot take its data.
pub fn check(pipeline: &Pipeline, dag: &Dag) -> Result<Vec<Shape>, Diagnostics> {
    let mut shapes = vec![Shape::UNKNOWN; pipeline.stages.len()];
    let mut errors = Vec::new();
    for &i in dag.order() {
        let stage = &pipeline.stages[i];
        shapes[i] = infer(stage, |name| {
            pipeline.stages.iter().position(|s| s.name == name).map_or(Shape::UNKNOWN, |j| shapes[j])
        });
        if stage.kind == "train" {
            if let Some(d) = check_train(pipeline, stage, &shapes) {
                errors.push(d);
            }
        }
    }
    if errors.is_empty() {
        Ok(shapes)
    } else {
        Err(Diagnostics(errors))
    }
}

fn int(stage: &Stage, name: &str) -> Option<u32> {
    stage.params.get(name).and_then(Value::as_int).and_then(|v| u32::try_from(v).ok())
}

fn input_shape(stage: &Stage, param: &str, shape_of: &impl Fn(&str) -> Shape) -> Shape {
    match stage.params.get(param) {
        Some(Value::Stage(name)) => shape_of(name),
        _ => Shape::UNKNOWN,
    }
}

/// The output shape of one stage given its inputs' shapes.
fn infer(stage: &Stage, shape_of: impl Fn(&str) -> Shape) -> Shape {
    match stage.kind.as_str() {
        "mnist" => Shape { channels: Some(1), size: Some((28, 28)) },
        "images" => Shape { channels: int(stage, "channels"), size: None },
        "crop" => {
            let size = int(stage, "size").map(|s| (s, s));
            let channels = input_shape(stage, "images", &shape_of).channels.or_else(|| int(stage, "channels"));
            Shape { channels, size }
        }
        "vae_encode" => {
            let input = input_shape(stage, "images", &shape_of);
            Shape { channels: Some(4), size: input.size.map(|(h, w)| (h / 8, w / 8)) }
        }
        _ => Shape::UNKNOWN,
    }
}

/// A train stage whose data shape is known and does not fit its net.
fn check_train(pipeline: &Pipeline, stage: &Stage, shapes: &[Shape]) -> Option<Diagnostic> {
    let Some(Value::Stage(data)) = stage.params.get("data") else { return None };
    let shape = pipeline.stages.iter().position(|s| &s.name == data).map(|j| shapes[j])?;
    let (Some(channels), Some((h, w))) = (shape.channels, shape.size) else { return None };
    let net = stage.params.get("net")?;
    let message = if h == w {
        check_net(net, h, channels).err()
    } else {
        Some(("data".to_string(), format!("the nets take square images; `{data}` is {h}x{w}")))
    }?;
    let (param, text) = message;
    let top = param.split('.').next().unwrap_or("net");
    let span = stage.param_spans.get(top).copied().unwrap_or(stage.span);
    Some(
        Diagnostic::new(
            &pipeline.sources,
            "msnr::data_does_not_fit_net",
            format!("stage `{}`: `{param}`: {text}", stage.name),
            span,
            format!("`{data}` gives {channels}x{h}x{w}"),
        )
        .with_help("change the net's parameters or the data's size (crop) so they fit"),
    )
}
