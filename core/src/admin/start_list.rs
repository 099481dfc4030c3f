//! A start list, as an organizer keeps it in a spreadsheet: one row per participant and
//! device, `bib,name,device_id`, with a header row.
//!
//! The shell reads the CSV (quoting, line ends) and hands over the cells with their line
//! numbers; this module checks every row and collects every problem, each naming its line
//! and column, so that one run shows the organizer everything to fix.

use std::collections::BTreeMap;
use std::fmt;

use super::fields::{parse_bib, parse_device_id, parse_entry_name};

/// Rows read from one file at most: a start list is a few thousand participants, and the
/// import runs in one transaction. Also the number of entries `GET /events/<uuid>` lists.
pub const MAX_START_LIST_ROWS: usize = 10_000;

/// Problems reported at most; the rest are counted.
const MAX_REPORTED: usize = 20;

const BIB: &str = "bib";
const NAME: &str = "name";
const DEVICE_ID: &str = "device_id";
const COLUMNS: [&str; 3] = [BIB, NAME, DEVICE_ID];

/// One participant of the list: its bib (the key within the event), its name, and every
/// device the list gives it, in the order of their rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartListEntry {
    pub bib: String,
    pub name: Option<String>,
    pub devices: Vec<String>,
    /// The first line the bib appears on.
    pub line: u64,
}

/// A checked start list: bibs unique, each device in one entry at most.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StartList {
    pub entries: Vec<StartListEntry>,
}

/// One problem of one line (1 is the header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineProblem {
    pub line: u64,
    pub column: Option<&'static str>,
    pub problem: String,
}

impl fmt::Display for LineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(column) => write!(f, "line {}, column {column}: {}", self.line, self.problem),
            None => write!(f, "line {}: {}", self.line, self.problem),
        }
    }
}

/// Why a start list was refused: every problem found, in line order (the first
/// `MAX_REPORTED` (20) of them, and how many more there were).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct StartListError {
    pub problems: Vec<LineProblem>,
    pub more: usize,
}

impl fmt::Display for StartListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the start list has errors; nothing was imported")?;
        for problem in &self.problems {
            write!(f, "\n  {problem}")?;
        }
        if self.more > 0 {
            write!(f, "\n  ... and {} more", self.more)?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Problems {
    list: Vec<LineProblem>,
    more: usize,
}

impl Problems {
    fn add(&mut self, line: u64, column: Option<&'static str>, problem: impl ToString) {
        if self.list.len() < MAX_REPORTED {
            self.list.push(LineProblem {
                line,
                column,
                problem: problem.to_string(),
            });
        } else {
            self.more += 1;
        }
    }
}

/// Where each known column is in the header.
struct Layout {
    bib: usize,
    name: Option<usize>,
    device_id: Option<usize>,
    width: usize,
}

fn layout(header: &[String], problems: &mut Problems) -> Option<Layout> {
    let mut positions: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (i, cell) in header.iter().enumerate() {
        // A spreadsheet saved as "CSV UTF-8" starts with a byte order mark.
        let cell = cell
            .trim_start_matches('\u{feff}')
            .trim()
            .to_ascii_lowercase();
        match COLUMNS.iter().find(|c| **c == cell) {
            Some(column) => {
                if positions.insert(column, i).is_some() {
                    problems.add(1, None, format!("column `{column}` is named twice"));
                }
            }
            None => problems.add(
                1,
                None,
                format!(
                    "unknown column `{cell}`; the columns are {}",
                    COLUMNS.join(", ")
                ),
            ),
        }
    }
    let Some(bib) = positions.get(BIB).copied() else {
        problems.add(
            1,
            None,
            "no `bib` column: the header row must name the columns, bib first (e.g. bib,name,device_id)",
        );
        return None;
    };
    Some(Layout {
        bib,
        name: positions.get(NAME).copied(),
        device_id: positions.get(DEVICE_ID).copied(),
        width: header.len(),
    })
}

impl StartList {
    /// Checks a start list: `header` is line 1, `rows` the following records with their
    /// line numbers. Blank rows are skipped. A bib may appear on several rows (one per
    /// device), always with the same name; a device on one bib only.
    pub fn parse(
        header: &[String],
        rows: &[(u64, Vec<String>)],
    ) -> Result<StartList, StartListError> {
        let mut problems = Problems::default();
        let layout = layout(header, &mut problems);
        if rows.len() > MAX_START_LIST_ROWS {
            problems.add(
                1,
                None,
                format!(
                    "{} rows; a start list has at most {MAX_START_LIST_ROWS}",
                    rows.len()
                ),
            );
        }
        let Some(layout) = layout.filter(|_| problems.list.is_empty()) else {
            return Err(StartListError {
                problems: problems.list,
                more: problems.more,
            });
        };

        let mut entries: Vec<StartListEntry> = Vec::new();
        let mut by_bib: BTreeMap<String, usize> = BTreeMap::new();
        // Device to the line and bib it was first given on.
        let mut devices: BTreeMap<String, (u64, String)> = BTreeMap::new();
        for (line, cells) in rows {
            let line = *line;
            if cells.iter().all(|c| c.trim().is_empty()) {
                continue;
            }
            if cells.len() != layout.width {
                problems.add(
                    line,
                    None,
                    format!(
                        "{} fields, but the header has {}",
                        cells.len(),
                        layout.width
                    ),
                );
                continue;
            }
            let cell = |i: Option<usize>| i.and_then(|i| cells.get(i)).map(String::as_str);
            let bib = match parse_bib(cell(Some(layout.bib)).unwrap_or_default()) {
                Ok(bib) => bib,
                Err(error) => {
                    problems.add(line, Some(BIB), error);
                    continue;
                }
            };
            let name = match cell(layout.name).map(str::trim).filter(|n| !n.is_empty()) {
                None => None,
                Some(name) => match parse_entry_name(name) {
                    Ok(name) => Some(name),
                    Err(error) => {
                        problems.add(line, Some(NAME), error);
                        continue;
                    }
                },
            };
            let device = match cell(layout.device_id)
                .map(str::trim)
                .filter(|d| !d.is_empty())
            {
                None => None,
                Some(device) => match parse_device_id(device) {
                    Ok(device) => Some(device),
                    Err(error) => {
                        problems.add(line, Some(DEVICE_ID), error);
                        continue;
                    }
                },
            };
            let index = match by_bib.get(&bib) {
                Some(&index) => {
                    let entry = &entries[index];
                    if entry.name != name {
                        problems.add(
                            line,
                            Some(NAME),
                            format!(
                                "bib {bib} is named {} here but {} on line {}",
                                shown(name.as_deref()),
                                shown(entry.name.as_deref()),
                                entry.line
                            ),
                        );
                        continue;
                    }
                    index
                }
                None => {
                    by_bib.insert(bib.clone(), entries.len());
                    entries.push(StartListEntry {
                        bib: bib.clone(),
                        name,
                        devices: Vec::new(),
                        line,
                    });
                    entries.len() - 1
                }
            };
            if let Some(device) = device {
                match devices.get(&device) {
                    Some((_, first_bib)) if *first_bib == bib => {}
                    Some((first_line, first_bib)) => problems.add(
                        line,
                        Some(DEVICE_ID),
                        format!(
                            "device {device} is also on line {first_line} (bib {first_bib}); \
                             a device belongs to one entry of an event"
                        ),
                    ),
                    None => {
                        devices.insert(device.clone(), (line, bib));
                        entries[index].devices.push(device);
                    }
                }
            }
        }
        if problems.list.is_empty() {
            Ok(StartList { entries })
        } else {
            Err(StartListError {
                problems: problems.list,
                more: problems.more,
            })
        }
    }
}

fn shown(name: Option<&str>) -> String {
    match name {
        Some(name) => format!("`{name}`"),
        None => "nothing".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(line: &str) -> Vec<String> {
        line.split(',').map(str::to_owned).collect()
    }

    fn parse(text: &str) -> Result<StartList, StartListError> {
        let mut lines = text.lines();
        let header = cells(lines.next().unwrap_or_default());
        let rows: Vec<(u64, Vec<String>)> = lines
            .enumerate()
            .map(|(i, l)| (i as u64 + 2, cells(l)))
            .collect();
        StartList::parse(&header, &rows)
    }

    fn messages(error: StartListError) -> Vec<String> {
        error.problems.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn rows_of_one_bib_collect_its_devices() {
        let list = parse("bib,name,device_id\n1,Ana,100\n2,Ben,200\n1,Ana,101\n3,Cy,\n").unwrap();
        assert_eq!(list.entries.len(), 3);
        assert_eq!(list.entries[0].devices, vec!["100", "101"]);
        assert_eq!(list.entries[2].devices, Vec::<String>::new());
        assert_eq!(list.entries[1].name.as_deref(), Some("Ben"));
    }

    #[test]
    fn the_header_is_matched_loosely_and_may_reorder_or_omit_columns() {
        let list = parse("\u{feff}Device_ID , BIB\n100,7\n").unwrap();
        assert_eq!(list.entries[0].bib, "7");
        assert_eq!(list.entries[0].name, None);
        assert_eq!(list.entries[0].devices, vec!["100"]);
    }

    #[test]
    fn header_problems_are_reported_on_line_1() {
        assert_eq!(
            messages(parse("bib,nmae\n1,Ana\n").unwrap_err()),
            vec!["line 1: unknown column `nmae`; the columns are bib, name, device_id"]
        );
        let missing = messages(parse("name,device_id\nAna,1\n").unwrap_err());
        assert!(
            missing[0].starts_with("line 1: no `bib` column"),
            "{missing:?}"
        );
    }

    #[test]
    fn every_bad_row_is_reported_with_line_and_column() {
        let error = parse("bib,name,device_id\n,Ana,1\n2,Ben,3\x01\n3,Cy\n4,Di,3\n").unwrap_err();
        assert_eq!(
            messages(error),
            vec![
                "line 2, column bib: bib must not be empty",
                "line 3, column device_id: device_id must not contain control characters",
                "line 4: 2 fields, but the header has 3",
            ]
        );
    }

    #[test]
    fn a_device_on_two_bibs_and_a_bib_with_two_names_are_refused() {
        let error = parse("bib,name,device_id\n1,Ana,100\n2,Ben,100\n1,Anna,101\n").unwrap_err();
        assert_eq!(
            messages(error),
            vec![
                "line 3, column device_id: device 100 is also on line 2 (bib 1); a device belongs to one entry of an event",
                "line 4, column name: bib 1 is named `Anna` here but `Ana` on line 2",
            ]
        );
    }

    #[test]
    fn a_device_repeated_on_its_own_bib_is_kept_once() {
        let list = parse("bib,device_id\n1,100\n1,100\n").unwrap();
        assert_eq!(list.entries[0].devices, vec!["100"]);
    }

    #[test]
    fn blank_rows_are_skipped_and_problems_are_capped() {
        let mut text = String::from("bib\n\n");
        for _ in 0..25 {
            text.push_str("1 2\n");
        }
        let error = parse(&text).unwrap_err();
        assert_eq!(error.problems.len(), MAX_REPORTED);
        assert_eq!(error.more, 5);
        assert_eq!(error.problems[0].line, 3);
        assert!(error.to_string().ends_with("... and 5 more"));
    }

    fn rows(count: usize) -> Vec<(u64, Vec<String>)> {
        (0..count)
            .map(|i| {
                (
                    i as u64 + 2,
                    cells(&format!("{i},Runner {i},{}", 100_000 + i)),
                )
            })
            .collect()
    }

    #[test]
    fn a_start_list_holds_at_most_the_most_rows() {
        let header = cells("bib,name,device_id");
        let full = StartList::parse(&header, &rows(MAX_START_LIST_ROWS)).unwrap();
        assert_eq!(full.entries.len(), MAX_START_LIST_ROWS);
        let over = StartList::parse(&header, &rows(MAX_START_LIST_ROWS + 1)).unwrap_err();
        assert_eq!(
            messages(over),
            vec![format!(
                "line 1: {} rows; a start list has at most {MAX_START_LIST_ROWS}",
                MAX_START_LIST_ROWS + 1
            )]
        );
    }

    #[test]
    fn the_error_counts_what_it_does_not_list() {
        let problem = |line| LineProblem {
            line,
            column: None,
            problem: "bad".to_owned(),
        };
        let listed = StartListError {
            problems: vec![problem(2)],
            more: 0,
        };
        assert!(!listed.to_string().contains("more"), "{listed}");
        let cut = StartListError {
            problems: vec![problem(2)],
            more: 3,
        };
        assert!(cut.to_string().ends_with("\n  ... and 3 more"), "{cut}");
    }
}
