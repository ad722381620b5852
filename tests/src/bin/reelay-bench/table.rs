//! A curve's numbers as a table: named columns of figures, written as CSV with a header row.

use std::fmt::Write as _;
use std::path::Path;

/// Rows of figures under named columns; the first column is the curve's x.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<f64>>,
}

impl Table {
    pub fn new(columns: &[&'static str]) -> Self {
        Self {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; it must have one figure per column.
    pub fn push(&mut self, row: Vec<f64>) {
        assert_eq!(row.len(), self.columns.len(), "one figure per column");
        self.rows.push(row);
    }

    /// The same rows with only `columns` (in that order; unknown names are left out).
    pub fn select(&self, columns: &[&'static str]) -> Self {
        let indexes: Vec<(usize, &'static str)> = columns
            .iter()
            .filter_map(|name| Some((self.columns.iter().position(|c| c == name)?, *name)))
            .collect();
        Self {
            columns: indexes.iter().map(|(_, name)| *name).collect(),
            rows: self
                .rows
                .iter()
                .map(|row| indexes.iter().map(|(i, _)| row[*i]).collect())
                .collect(),
        }
    }

    /// The (x, y) points of column `name` against the first column.
    pub fn points(&self, name: &str) -> Vec<(f64, f64)> {
        let Some(index) = self.columns.iter().position(|c| *c == name) else {
            return Vec::new();
        };
        self.rows.iter().map(|row| (row[0], row[index])).collect()
    }

    /// The table as CSV: a header row, then one line per row. Whole numbers print without a
    /// fraction, others with 3 decimals.
    pub fn to_csv(&self) -> String {
        let mut csv = self.columns.join(",");
        csv.push('\n');
        for row in &self.rows {
            let cells: Vec<String> = row.iter().map(|v| cell(*v)).collect();
            let _ = writeln!(csv, "{}", cells.join(","));
        }
        csv
    }

    pub fn write_csv(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.to_csv())
    }
}

fn cell(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    }
}

/// How steeply `y` grows between consecutive points, as the exponent k of y ∝ x^k: 1 is linear,
/// above 1 superlinear (the curve bends up).
pub fn growth_exponents(points: &[(f64, f64)]) -> Vec<f64> {
    points
        .windows(2)
        .filter(|w| w[0].0 > 0.0 && w[0].1 > 0.0 && w[1].0 > w[0].0 && w[1].1 > 0.0)
        .map(|w| (w[1].1 / w[0].1).ln() / (w[1].0 / w[0].0).ln())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_has_a_header_and_one_line_per_row() {
        let mut table = Table::new(&["clients", "creates_per_s"]);
        table.push(vec![1.0, 1_523.456_7]);
        table.push(vec![64.0, 13380.0]);
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("creates.csv");
        table.write_csv(&path).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, "clients,creates_per_s\n1,1523.457\n64,13380\n");
    }

    #[test]
    #[should_panic(expected = "one figure per column")]
    fn a_row_of_the_wrong_width_is_refused() {
        Table::new(&["a", "b"]).push(vec![1.0]);
    }

    #[test]
    fn points_pair_a_column_with_the_first() {
        let mut table = Table::new(&["jobs", "p50_ms", "p99_ms"]);
        table.push(vec![1.0, 0.5, 2.0]);
        table.push(vec![10.0, 0.6, 3.0]);
        assert_eq!(table.points("p99_ms"), vec![(1.0, 2.0), (10.0, 3.0)]);
        assert!(table.points("missing").is_empty());
    }

    #[test]
    fn select_keeps_the_named_columns_in_order() {
        let mut table = Table::new(&["jobs", "a_ms", "b_mib", "c_mib"]);
        table.push(vec![10.0, 1.0, 2.0, 3.0]);
        let memory = table.select(&["jobs", "c_mib", "b_mib", "missing"]);
        assert_eq!(memory.columns, ["jobs", "c_mib", "b_mib"]);
        assert_eq!(memory.rows, [vec![10.0, 3.0, 2.0]]);
    }

    #[test]
    fn growth_exponents_tell_linear_from_superlinear() {
        let linear = growth_exponents(&[(10.0, 5.0), (100.0, 50.0)]);
        assert!((linear[0] - 1.0).abs() < 1e-9);
        let quadratic = growth_exponents(&[(10.0, 1.0), (100.0, 100.0)]);
        assert!((quadratic[0] - 2.0).abs() < 1e-9);
    }
}
