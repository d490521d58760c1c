//! Shared by the integration tests: the UCI digits data and MLP builder.
#![allow(dead_code)]

use flate2::read::GzDecoder;
use snac_core::arch::{Activation, Arch, Component, Norm, Shape};
use snac_core::data::Split;
use std::io::Read;
use std::path::Path;

const DIGITS: &str = "/work/shared/data/uci_digits_8x8/digits.csv.gz";

/// UCI digits 8×8: 64 pixel values 0..16 then the label, one row per line;
/// pixels scaled by 1/16. `None` when the file is not there.
pub fn digits() -> Option<(Split, Split)> {
    let path = Path::new(DIGITS);
    if !path.exists() {
        eprintln!("skipping: {DIGITS} is absent");
        return None;
    }
    let mut text = String::new();
    GzDecoder::new(std::fs::File::open(path).unwrap()).read_to_string(&mut text).unwrap();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<f32> = line.split(',').map(|f| f.trim().parse().unwrap()).collect();
        assert_eq!(fields.len(), 65, "digits row with {} fields", fields.len());
        x.extend(fields[..64].iter().map(|v| v / 16.0));
        y.push(fields[64] as u32);
    }
    assert_eq!(y.len(), 1797);
    let cut = 1400;
    let train = Split { x: x[..cut * 64].to_vec(), y: y[..cut].to_vec() };
    let val = Split { x: x[cut * 64..].to_vec(), y: y[cut..].to_vec() };
    Some((train, val))
}

pub fn mlp(inputs: usize, hidden: &[usize], norm: Norm, act: Activation, classes: usize) -> Arch {
    let mut components: Vec<Component> =
        hidden.iter().enumerate().map(|(i, &units)| Component::mlp(&format!("b{i}"), units, norm, act)).collect();
    components.push(Component::output("output", classes, Activation::Softmax));
    Arch::new(Shape::Flat(inputs), components)
}
