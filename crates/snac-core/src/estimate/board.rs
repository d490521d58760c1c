//! FPGA boards an estimate is measured against: rule4ml's four
//! (docs/snac-pack-compat.md §7) and custom parts. A [`Board`] only carries
//! the resource totals that turn counts into percentages.

use anyhow::{Result, bail, ensure};
use serde::{Deserialize, Serialize};

/// An FPGA part with its resource totals. `bram` counts 18 Kbit block RAMs
/// (`BRAM_18K`), as Vivado's reports and rule4ml do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Board {
    /// rule4ml's board name, or `custom` for [`Board::custom`].
    pub name: String,
    /// The Xilinx part number.
    pub part: String,
    pub lut: u64,
    pub ff: u64,
    pub dsp: u64,
    pub bram: u64,
}

/// rule4ml's boards: name, part, BRAM_18K, DSP, FF, LUT (docs/snac-pack-compat.md §7).
const KNOWN: [(&str, &str, u64, u64, u64, u64); 4] = [
    ("pynq-z2", "xc7z020clg400-1", 280, 220, 106_400, 53_200),
    ("zcu102", "xczu9eg-ffvb1156-2-e", 1_824, 2_520, 548_160, 274_080),
    ("alveo-u200", "xcu200", 4_320, 6_840, 2_364_480, 1_182_240),
    ("alveo-u250", "xcu250", 5_376, 12_288, 3_456_000, 1_728_000),
];

/// Other common parts by part-number prefix: name, part, BRAM_18K, DSP, FF,
/// LUT (from the vendors' product tables).
const PARTS: [(&str, &str, u64, u64, u64, u64); 5] = [
    ("vu9p", "xcvu9p", 4_320, 6_840, 2_364_480, 1_182_240),
    ("vu13p", "xcvu13p", 5_376, 12_288, 3_456_000, 1_728_000),
    ("ku115", "xcku115", 4_320, 5_520, 1_326_720, 663_360),
    ("zu7ev", "xczu7ev", 624, 1_728, 460_800, 230_400),
    ("artix7-100t", "xc7a100t", 270, 240, 126_800, 63_400),
];

impl Board {
    /// A board from what a user or a report writes: one of rule4ml's board
    /// names, a known part number (any package and speed grade, e.g.
    /// `xcvu9p-flga2104-2L-e`), or a custom part as `PART:LUT:FF:DSP:BRAM`.
    pub fn parse(spec: &str) -> Result<Board> {
        if let Ok(board) = Board::by_name(spec) {
            return Ok(board);
        }
        if let Some(board) = Board::by_part(spec) {
            return Ok(board);
        }
        let fields: Vec<&str> = spec.split(':').collect();
        if let [part, lut, ff, dsp, bram] = fields[..] {
            let number = |what: &str, text: &str| {
                text.trim().replace('_', "").parse::<u64>().map_err(|_| {
                    anyhow::anyhow!("custom board '{spec}': the {what} total '{text}' is not a whole number")
                })
            };
            return Board::custom(
                part,
                number("LUT", lut)?,
                number("FF", ff)?,
                number("DSP", dsp)?,
                number("BRAM", bram)?,
            );
        }
        let parts: Vec<&str> = PARTS.iter().map(|p| p.1).collect();
        bail!(
            "unknown board or part '{spec}'{}; accepted: {}, a part starting with {} or one of rule4ml's parts, or a \
             custom part as PART:LUT:FF:DSP:BRAM (e.g. xc7a35t:20800:41600:90:100)",
            crate::suggest::did_you_mean(spec, Board::NAMES),
            Board::NAMES.join(", "),
            parts.join(", ")
        )
    }

    /// The board of a part number, matched by prefix (`xcu250-figd2104-2L-e`
    /// is the Alveo U250), when it is one of the parts known here.
    pub fn by_part(part: &str) -> Option<Board> {
        let key = part.trim().to_lowercase();
        let matches = |prefix: &str| {
            let prefix = prefix.to_lowercase();
            let prefix = prefix.split('-').next().unwrap_or(&prefix).to_string();
            !prefix.is_empty() && key.starts_with(&prefix)
        };
        // rule4ml's parts by family (any package and speed grade).
        const FAMILIES: [&str; 4] = ["xc7z020", "xczu9eg", "xcu200", "xcu250"];
        if let Some(index) = FAMILIES.iter().position(|family| key.starts_with(family)) {
            return Board::by_name(KNOWN[index].0).ok();
        }
        if let Some(&(name, part, bram, dsp, ff, lut)) = PARTS.iter().find(|known| key == known.0 || matches(known.1)) {
            return Some(Board { name: name.to_string(), part: part.to_string(), lut, ff, dsp, bram });
        }
        None
    }

    /// The names [`Board::by_name`] accepts.
    pub const NAMES: [&'static str; 4] = [KNOWN[0].0, KNOWN[1].0, KNOWN[2].0, KNOWN[3].0];

    /// One of rule4ml's boards, by name: case-insensitive, `_` for `-`
    /// (`PYNQ_Z2`, `Alveo-U250`).
    pub fn by_name(name: &str) -> Result<Board> {
        let key = name.trim().to_lowercase().replace('_', "-");
        let Some(&(name, part, bram, dsp, ff, lut)) = KNOWN.iter().find(|known| known.0 == key) else {
            bail!(
                "unknown board '{name}'{}; accepted: {} (or a custom part with its LUT, FF, DSP and BRAM totals)",
                crate::suggest::did_you_mean(name, Board::NAMES),
                Board::NAMES.join(", ")
            );
        };
        Ok(Board { name: name.to_string(), part: part.to_string(), lut, ff, dsp, bram })
    }

    /// rule4ml's four boards.
    pub fn all() -> Vec<Board> {
        Board::NAMES.iter().map(|name| Board::by_name(name).expect("known board")).collect()
    }

    /// A part that is not one of rule4ml's boards. Every total must be
    /// positive, since percentages divide by them.
    pub fn custom(part: &str, lut: u64, ff: u64, dsp: u64, bram: u64) -> Result<Board> {
        ensure!(!part.trim().is_empty(), "custom board: the part name is empty");
        for (what, total) in [("LUT", lut), ("FF", ff), ("DSP", dsp), ("BRAM", bram)] {
            ensure!(total > 0, "custom board '{part}': the {what} total must be positive, got {total}");
        }
        Ok(Board { name: "custom".to_string(), part: part.trim().to_string(), lut, ff, dsp, bram })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_boards_match_reference_table() {
        let pynq = Board::by_name("pynq-z2").unwrap();
        assert_eq!(
            (pynq.part.as_str(), pynq.bram, pynq.dsp, pynq.ff, pynq.lut),
            ("xc7z020clg400-1", 280, 220, 106_400, 53_200)
        );
        let u250 = Board::by_name("alveo-u250").unwrap();
        assert_eq!(
            (u250.part.as_str(), u250.bram, u250.dsp, u250.ff, u250.lut),
            ("xcu250", 5_376, 12_288, 3_456_000, 1_728_000)
        );
        assert_eq!(Board::by_name("zcu102").unwrap().lut, 274_080);
        assert_eq!(Board::by_name("alveo-u200").unwrap().dsp, 6_840);
        assert_eq!(Board::all().len(), 4);
    }

    #[test]
    fn names_are_case_and_underscore_insensitive() {
        assert_eq!(Board::by_name("PYNQ_Z2").unwrap().name, "pynq-z2");
        assert_eq!(Board::by_name(" Alveo_U200 ").unwrap().name, "alveo-u200");
    }

    #[test]
    fn unknown_board_lists_accepted_names() {
        let message = format!("{:#}", Board::by_name("kintex").unwrap_err());
        assert!(message.contains("kintex"), "{message}");
        for name in Board::NAMES {
            assert!(message.contains(name), "{message}");
        }
        assert!(!message.contains("did you mean"), "{message}");
        // A near miss names the board it resembles, as a board and as a part.
        let message = format!("{:#}", Board::by_name("zcu012").unwrap_err());
        assert!(message.contains("'zcu012' (did you mean 'zcu102'?)"), "{message}");
        let message = format!("{:#}", Board::parse("pynq-z1").unwrap_err());
        assert!(message.contains("'pynq-z1' (did you mean 'pynq-z2'?)"), "{message}");
    }

    #[test]
    fn custom_board_checks_totals() {
        let board = Board::custom("xcvu9p", 1_182_240, 2_364_480, 6_840, 4_320).unwrap();
        assert_eq!((board.name.as_str(), board.part.as_str()), ("custom", "xcvu9p"));
        let message = format!("{:#}", Board::custom("xcvu9p", 1, 1, 0, 1).unwrap_err());
        assert!(message.contains("DSP"), "{message}");
        assert!(Board::custom(" ", 1, 1, 1, 1).is_err());
    }
}
