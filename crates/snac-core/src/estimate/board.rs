//! FPGA boards an estimate is measured against: rule4ml's four (REFERENCE.md
//! §7) and custom parts. A [`Board`] only carries the resource totals that turn
//! counts into percentages.

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

/// rule4ml's boards: name, part, BRAM_18K, DSP, FF, LUT (REFERENCE.md §7).
const KNOWN: [(&str, &str, u64, u64, u64, u64); 4] = [
    ("pynq-z2", "xc7z020clg400-1", 280, 220, 106_400, 53_200),
    ("zcu102", "xczu9eg-ffvb1156-2-e", 1_824, 2_520, 548_160, 274_080),
    ("alveo-u200", "xcu200", 4_320, 6_840, 2_364_480, 1_182_240),
    ("alveo-u250", "xcu250", 5_376, 12_288, 3_456_000, 1_728_000),
];

impl Board {
    /// The names [`Board::by_name`] accepts.
    pub const NAMES: [&'static str; 4] = [KNOWN[0].0, KNOWN[1].0, KNOWN[2].0, KNOWN[3].0];

    /// One of rule4ml's boards, by name: case-insensitive, `_` for `-`
    /// (`PYNQ_Z2`, `Alveo-U250`).
    pub fn by_name(name: &str) -> Result<Board> {
        let key = name.trim().to_lowercase().replace('_', "-");
        let Some(&(name, part, bram, dsp, ff, lut)) = KNOWN.iter().find(|known| known.0 == key) else {
            bail!(
                "unknown board '{name}'; accepted: {} (or a custom part with its LUT, FF, DSP and BRAM totals)",
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
