//! Batches, as Ansible's `serial`: a count (`2`), a percentage (`25%`), or a ramp (`1,2,50%`,
//! the last step repeating). Percentages round up and are at least one host.

/// One step of a batch spec.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    Count(usize),
    Percent(f64),
}

/// Parses `2`, `25%`, `1,2,50%`.
pub fn parse(spec: &str) -> Result<Vec<Step>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim) {
        if let Some(p) = part.strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("{part:?} is not a percentage"))?;
            if !(v > 0.0 && v <= 100.0) {
                return Err(format!(
                    "{part:?}: a percentage is more than 0 and at most 100"
                ));
            }
            out.push(Step::Percent(v));
        } else {
            let n: usize = part.parse().map_err(|_| {
                format!("{part:?} is not a count or a percentage (2, 25%, 1,2,50%)")
            })?;
            if n == 0 {
                return Err("a batch of 0 hosts never ends".into());
            }
            out.push(Step::Count(n));
        }
    }
    if out.is_empty() {
        return Err("empty batch spec".into());
    }
    Ok(out)
}

/// Splits `hosts` into batches.
pub fn batches<T: Clone>(steps: &[Step], hosts: &[T]) -> Vec<Vec<T>> {
    let total = hosts.len();
    let mut out = Vec::new();
    let mut i = 0;
    let mut k = 0;
    while i < total {
        let step = steps[k.min(steps.len() - 1)];
        let n = match step {
            Step::Count(n) => n,
            Step::Percent(p) => ((total as f64) * p / 100.0).ceil().max(1.0) as usize,
        };
        let end = (i + n).min(total);
        out.push(hosts[i..end].to_vec());
        i = end;
        k += 1;
    }
    out
}

/// "2/7 hosts, 28.6%".
pub fn fraction(n: usize, total: usize) -> String {
    format!(
        "{n}/{total} hosts, {:.1}%",
        if total == 0 {
            0.0
        } else {
            n as f64 * 100.0 / total as f64
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(spec: &str, n: usize) -> Vec<usize> {
        let hosts: Vec<usize> = (0..n).collect();
        batches(&parse(spec).unwrap(), &hosts)
            .iter()
            .map(Vec::len)
            .collect()
    }

    #[test]
    fn counts_percentages_and_ramps() {
        assert_eq!(sizes("2", 4), vec![2, 2]);
        assert_eq!(sizes("2", 5), vec![2, 2, 1]);
        assert_eq!(sizes("25%", 7), vec![2, 2, 2, 1]);
        assert_eq!(sizes("10%", 3), vec![1, 1, 1]);
        assert_eq!(sizes("1,2,50%", 10), vec![1, 2, 5, 2]);
        assert_eq!(sizes("100%", 4), vec![4]);
        assert_eq!(fraction(2, 7), "2/7 hosts, 28.6%");
        assert!(parse("0").is_err());
        assert!(parse("150%").is_err());
        assert!(parse("x").unwrap_err().contains("not a count"));
    }
}
