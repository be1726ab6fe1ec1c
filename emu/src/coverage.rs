//! `emu coverage`: the instruction coverage report.
//!
//! Runs the probe of [`jit::coverage`] over every iced-x86 instruction code and prints how many
//! of each class the software CPU implements (and how many of those the translator emits inline),
//! as a text table or CSV, optionally followed by the list of codes with a given status.

use std::fmt::Write as _;

use jit::coverage::{self, Class, NotProbed, Probe, Status, Tally};

/// Output format of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Csv,
}

/// Which codes to list after the table (with the mode and bytes probed, and for implemented
/// codes the exception the probe raised in the sandbox).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lists {
    pub implemented: bool,
    pub unimplemented: bool,
    pub not_probed: bool,
}

/// Probe every code. The probes deliberately execute unimplemented instructions, whose #UD
/// warnings (one per code) are expected here: they are silenced while probing.
pub fn probe_all() -> Vec<Probe> {
    let level = log::max_level();
    log::set_max_level(log::LevelFilter::Error);
    let probes = coverage::probe_all();
    log::set_max_level(level);
    probes
}

/// The report for `probes`.
pub fn report(probes: &[Probe], format: Format, lists: Lists) -> String {
    let (rows, total) = coverage::tally(probes);
    let mut out = match format {
        Format::Text => text_table(&rows, &total),
        Format::Csv => csv_table(&rows, &total),
    };
    let wanted = |s: &Status| match s {
        Status::Implemented { .. } => lists.implemented,
        Status::Unimplemented => lists.unimplemented,
        Status::NotProbed(_) => lists.not_probed,
    };
    let listed: Vec<&Probe> = probes.iter().filter(|p| wanted(&p.status)).collect();
    if lists != Lists::default() {
        out.push('\n');
        out.push_str(&code_list(&listed, format));
    }
    out
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Implemented { inline: Some(true) } => "implemented (inline)",
        Status::Implemented {
            inline: Some(false),
        } => "implemented (interpreter helper)",
        Status::Implemented { inline: None } => "implemented",
        Status::Unimplemented => "unimplemented",
        Status::NotProbed(NotProbed::DecoderOption) => "not probed (needs a decoder option)",
        Status::NotProbed(NotProbed::Fwait) => "not probed (decoded as WAIT + no-wait form)",
        Status::NotProbed(NotProbed::NoEncoding) => "not probed (no encoding decodes to it)",
        Status::NotProbed(NotProbed::Panicked) => "not probed (probe panicked)",
    }
}

/// The exception a probe raised, by its SDM mnemonic (Vol. 3A Table 6-1); `-` for none.
fn fault_name(vector: Option<u8>) -> String {
    const NAMES: [&str; 21] = [
        "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP", "#SS",
        "#GP", "#PF", "#15", "#MF", "#AC", "#MC", "#XM", "#VE",
    ];
    match vector {
        None => String::from("-"),
        Some(v) => NAMES
            .get(usize::from(v))
            .map_or_else(|| format!("int {v:#x}"), |n| String::from(*n)),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const TEXT_HEADER: [&str; 7] = [
    "codes",
    "probed",
    "implemented",
    "inline",
    "unimpl.",
    "not probed",
    "impl. %",
];

fn text_table(rows: &[(Class, Tally)], total: &Tally) -> String {
    let width = Class::ALL.iter().map(|c| c.name().len()).max().unwrap_or(0);
    let mut s = format!("{:<width$}", "class");
    for h in TEXT_HEADER {
        let _ = write!(s, "  {h:>11}");
    }
    s.push('\n');
    let line = |s: &mut String, name: &str, t: &Tally| {
        let _ = write!(s, "{name:<width$}");
        for n in [
            t.codes,
            t.probed(),
            t.implemented,
            t.inline,
            t.unimplemented,
            t.not_probed,
        ] {
            let _ = write!(s, "  {n:>11}");
        }
        let _ = writeln!(s, "  {:>10.1}%", t.percent());
    };
    for (c, t) in rows {
        line(&mut s, c.name(), t);
    }
    line(&mut s, "all", total);
    s.push_str(
        "\nimpl. % = implemented / probed; inline = implemented codes the translator emits \
         inline (the rest call the interpreter helper)\n",
    );
    s
}

fn csv_table(rows: &[(Class, Tally)], total: &Tally) -> String {
    let mut s =
        String::from("class,codes,probed,implemented,inline,unimplemented,not_probed,percent\n");
    let line = |s: &mut String, name: &str, t: &Tally| {
        let _ = writeln!(
            s,
            "{name},{},{},{},{},{},{},{:.1}",
            t.codes,
            t.probed(),
            t.implemented,
            t.inline,
            t.unimplemented,
            t.not_probed,
            t.percent()
        );
    };
    for (c, t) in rows {
        line(&mut s, c.name(), t);
    }
    line(&mut s, "all", total);
    s
}

fn code_list(probes: &[&Probe], format: Format) -> String {
    let mut s = String::new();
    match format {
        Format::Text => {
            for p in probes {
                let mode = if p.bitness == 0 {
                    String::from("-")
                } else {
                    format!("{}-bit", p.bitness)
                };
                let _ = writeln!(
                    s,
                    "{:<48} {:<26} {:<7} {:<30} {:<7} {}",
                    format!("{:?}", p.code),
                    p.class.name(),
                    mode,
                    hex(&p.bytes),
                    fault_name(p.fault),
                    status_name(p.status)
                );
            }
        }
        Format::Csv => {
            s.push_str("code,class,bitness,bytes,fault,status\n");
            for p in probes {
                let _ = writeln!(
                    s,
                    "{:?},{},{},{},{},{}",
                    p.code,
                    p.class.name(),
                    p.bitness,
                    hex(&p.bytes),
                    fault_name(p.fault),
                    status_name(p.status)
                );
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe of the code named `name` (emu refers to codes by name: no iced-x86 dependency).
    fn find<'a>(probes: &'a [Probe], name: &str) -> &'a Probe {
        probes
            .iter()
            .find(|p| format!("{:?}", p.code) == name)
            .unwrap_or_else(|| panic!("{name} probed"))
    }

    #[test]
    fn csv_rows_sum_to_the_total_and_lists_have_the_requested_codes() {
        let probes = probe_all();
        let csv = report(&probes, Format::Csv, Lists::default());
        let rows: Vec<Vec<&str>> = csv
            .lines()
            .skip(1)
            .map(|l| l.split(',').collect())
            .collect();
        assert_eq!(rows.len(), Class::ALL.len() + 1);
        let (classes, total) = rows.split_at(Class::ALL.len());
        for col in 1..7 {
            let sum: usize = classes
                .iter()
                .map(|r| r[col].parse::<usize>().unwrap())
                .sum();
            assert_eq!(sum, total[0][col].parse::<usize>().unwrap(), "column {col}");
        }
        assert_eq!(total[0][1].parse::<usize>().unwrap(), probes.len());

        let listed = report(
            &probes,
            Format::Text,
            Lists {
                unimplemented: true,
                ..Lists::default()
            },
        );
        assert!(listed.contains("VEX_Vaddps_xmm_xmm_xmmm128"));
        assert!(!listed.contains("Add_rm32_r32 "));
        assert!(matches!(
            find(&probes, "Add_rm32_r32").status,
            Status::Implemented { .. }
        ));
    }
}
