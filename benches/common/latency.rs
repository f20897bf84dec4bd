//! The latency tables of the benches that kill processes (`takeover`, `supervise`): quantiles
//! of each row's samples, and the ratio of a row to the baseline measured in the same run.

/// Sorts each row's samples (ns), then prints p50, p90, p99 and max of each in `unit`
/// (`ns_per_unit` ns each, `decimals` after the point), one line per row.
pub fn print_table(
    unit: &str,
    ns_per_unit: f64,
    decimals: usize,
    rows: &mut [(&str, &mut Vec<u64>)],
) {
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    println!(
        "{:<width$} {:>9} {:>9} {:>9} {:>9}   ({unit})",
        "", "p50", "p90", "p99", "max"
    );
    for (name, v) in rows.iter_mut() {
        v.sort_unstable();
        let at = |q| quantile(v, q) / ns_per_unit;
        println!(
            "{name:<width$} {:>9.decimals$} {:>9.decimals$} {:>9.decimals$} {:>9.decimals$}",
            at(0.5),
            at(0.9),
            at(0.99),
            at(1.0)
        );
    }
}

/// Prints `what`: the ratio of `row` to `baseline` at p50 and p99 (both sorted).
pub fn print_ratio(what: &str, row: &[u64], baseline: &[u64]) {
    println!(
        "ratio {what}: p50 {:.2}x, p99 {:.2}x",
        quantile(row, 0.5) / quantile(baseline, 0.5),
        quantile(row, 0.99) / quantile(baseline, 0.99)
    );
}

/// The `q` quantile of sorted samples, as a float.
fn quantile(v: &[u64], q: f64) -> f64 {
    v[((v.len() - 1) as f64 * q).round() as usize] as f64
}
