//! The harness's plot: bar charts as one SVG file, drawn from `load.json`.

use serde_json::Value;

/// One bar chart: a title, (label, value) bars, how values are shown, and a dashed goal line.
struct Chart<'a> {
    title: &'a str,
    bars: Vec<(String, f64)>,
    shown: fn(f64) -> String,
    goal: Option<f64>,
}

/// Three charts side by side: the CPU ratio floor / handler and the Events/s ratio handler /
/// floor per scenario (goal 1.0), and peak RSS / request per memory scenario (goal 1.5).
pub fn plot(results: &Value) -> String {
    let bars = |key: &str, field: &str| -> Vec<(String, f64)> {
        results[key]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|v| {
                        let name = v["scenario"].as_str().unwrap_or("").to_string();
                        (name, v[field].as_f64().unwrap_or(0.0))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let charts = [
        Chart {
            title: "CPU per invocation: floor / handler",
            bars: bars("versus_floor", "cpu_ratio"),
            shown: |v| format!("{v:.2}"),
            goal: Some(1.0),
        },
        Chart {
            title: "Events/s, 8 partitions: handler / floor",
            bars: bars("versus_floor", "rate_ratio"),
            shown: |v| format!("{v:.2}"),
            goal: Some(1.0),
        },
        Chart {
            title: "Peak RSS / request size",
            bars: bars("memory", "peak_vs_request"),
            shown: |v| format!("{v:.2}x"),
            goal: Some(1.5),
        },
    ];
    let width = 40.0 + 480.0 * charts.len() as f64;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="430" font-family="sans-serif" font-size="12">
<rect width="{width}" height="430" fill="white"/>
"#
    );
    for (i, chart) in charts.iter().enumerate() {
        draw(&mut svg, 40.0 + 480.0 * i as f64, chart);
    }
    svg.push_str("</svg>\n");
    svg
}

fn draw(svg: &mut String, x0: f64, chart: &Chart<'_>) {
    let (w, h, top) = (400.0, 250.0, 50.0);
    let max = chart
        .bars
        .iter()
        .map(|d| d.1)
        .chain(chart.goal)
        .fold(0.0_f64, f64::max)
        .max(1e-9)
        * 1.15;
    svg.push_str(&format!(
        r#"<text x="{x0}" y="25" font-size="15" font-weight="bold">{}</text>
<line x1="{x0}" y1="{}" x2="{}" y2="{}" stroke="black"/>
"#,
        escape(chart.title),
        top + h,
        x0 + w,
        top + h
    ));
    let slot = w / chart.bars.len().max(1) as f64;
    for (i, (name, value)) in chart.bars.iter().enumerate() {
        let bh = value / max * h;
        let x = x0 + i as f64 * slot + slot * 0.15;
        svg.push_str(&format!(
            r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="#4477aa"/>
<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>
"##,
            top + h - bh,
            slot * 0.7,
            x + slot * 0.35,
            top + h - bh - 5.0,
            (chart.shown)(*value)
        ));
        for (j, line) in wrap(&name.replace(" (", " \n("), 16).iter().enumerate() {
            svg.push_str(&format!(
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>
"#,
                x + slot * 0.35,
                top + h + 18.0 + 14.0 * j as f64,
                escape(line)
            ));
        }
    }
    if let Some(goal) = chart.goal {
        let y = top + h - goal / max * h;
        svg.push_str(&format!(
            r##"<line x1="{x0}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#cc3311" stroke-dasharray="6,4"/>
<text x="{}" y="{:.1}" fill="#cc3311" text-anchor="start">{}</text>
"##,
            x0 + w,
            x0 + w + 4.0,
            y + 4.0,
            (chart.shown)(goal)
        ));
    }
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split(' ') {
        let fresh = word.starts_with('\n');
        let word = word.trim_start_matches('\n');
        match lines.last_mut() {
            Some(line) if !fresh && line.len() + word.len() < width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
