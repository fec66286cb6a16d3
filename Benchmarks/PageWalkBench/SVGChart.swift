import Foundation

/// A hand-written SVG bar chart of the ratios: range walker over callback
/// (batched and unbatched) per workload and work, and ours over the kernel
/// per workload and producer, on a log scale with 1.0 marked.
func svgChart(_ results: [WorkloadResult], _ targets: [TargetResult], title: String) -> String {
    struct Bar { var label: String; var value: Double; var color: String }
    struct Row { var label: String; var bars: [Bar] }
    var panels: [(String, [Row])] = []
    var rows: [Row] = []
    for r in results {
        for w in Work.allCases {
            var bars: [Bar] = []
            if let x = r.ratio(w, .rangeBatched) { bars.append(Bar(label: "batched", value: x, color: "#2b6cb0")) }
            if let x = r.ratio(w, .rangeUnbatched) { bars.append(Bar(label: "unbatched", value: x, color: "#90cdf4")) }
            if !bars.isEmpty { rows.append(Row(label: "\(r.workload) · \(w.rawValue)", bars: bars)) }
        }
    }
    panels.append(("range walker / callback walker (time, lower is better)", rows))
    rows = []
    for r in results {
        for w in Work.producers {
            if let x = r.oursOverKernel(w) {
                rows.append(Row(label: "\(r.workload) · \(w.rawValue)", bars: [Bar(label: "ours/kernel", value: x, color: "#c05621")]))
            }
        }
    }
    if !rows.isEmpty { panels.append(("ours (range walker, batched) / Linux /proc/self, per page", rows)) }

    let lo = -2.0, hi = 1.0          // log10 axis: 0.01 … 10
    let labelW = 230.0, plotW = 520.0, barH = 9.0, gap = 6.0, left = 10.0
    func x(_ v: Double) -> Double {
        let l = min(max(log10(max(v, 1e-9)), lo), hi)
        return left + labelW + (l - lo) / (hi - lo) * plotW
    }
    let esc = svgEscape
    var body = ""
    var y = 50.0
    for (name, rows) in panels {
        body += "<text x=\"\(left)\" y=\"\(y)\" font-size=\"14\" font-weight=\"bold\">\(esc(name))</text>\n"
        y += 14
        let top = y
        // Grid: decades and the 1.0 line.
        for e in Int(lo)...Int(hi) {
            for m in [1.0, 2.0, 5.0] where !(e == Int(hi) && m > 1) {
                let v = m * pow(10, Double(e))
                let gx = x(v)
                let h = Double(rows.count) * (Double(rows.first?.bars.count ?? 1) * barH + gap) + 4
                body += "<line x1=\"\(fmt(gx, 1))\" y1=\"\(top)\" x2=\"\(fmt(gx, 1))\" y2=\"\(fmt(top + h, 1))\" stroke=\"\(v == 1 ? "#000" : "#ddd")\" stroke-width=\"\(v == 1 ? 1.5 : 1)\"/>\n"
                body += "<text x=\"\(fmt(gx, 1))\" y=\"\(fmt(top - 2, 1))\" font-size=\"9\" text-anchor=\"middle\" fill=\"#555\">\(m == 1 ? String(format: "%g", v) : "")</text>\n"
            }
        }
        y += 4
        for row in rows {
            body += "<text x=\"\(left + labelW - 6)\" y=\"\(fmt(y + barH * Double(row.bars.count) / 2 + 3, 1))\" font-size=\"10\" text-anchor=\"end\">\(esc(row.label))</text>\n"
            for b in row.bars {
                let x0 = x(1e-9), x1 = x(b.value)
                body += "<rect x=\"\(fmt(x0, 1))\" y=\"\(fmt(y, 1))\" width=\"\(fmt(max(x1 - x0, 0.5), 1))\" height=\"\(barH - 1)\" fill=\"\(b.color)\"><title>\(esc(row.label)) \(b.label): \(fmt(b.value, 3))</title></rect>\n"
                body += "<text x=\"\(fmt(x1 + 3, 1))\" y=\"\(fmt(y + barH - 2, 1))\" font-size=\"8\" fill=\"#333\">\(fmt(b.value, 2))</text>\n"
                y += barH
            }
            y += gap
        }
        y += 30
    }
    // Legend and targets.
    var legend = ""
    var ly = y
    for (color, text) in [("#2b6cb0", "range walker batched / callback"), ("#90cdf4", "range walker unbatched / callback"),
                          ("#c05621", "ours / kernel (per page, kernel baseline-subtracted)")] {
        legend += "<rect x=\"\(left)\" y=\"\(ly - 8)\" width=\"10\" height=\"8\" fill=\"\(color)\"/><text x=\"\(left + 14)\" y=\"\(ly)\" font-size=\"10\">\(esc(text))</text>\n"
        ly += 14
    }
    ly += 6
    legend += "<text x=\"\(left)\" y=\"\(ly)\" font-size=\"12\" font-weight=\"bold\">Targets</text>\n"
    ly += 14
    for t in targets {
        let mark = t.met.map { $0 ? "met" : "MISSED" } ?? "n/a"
        let color = t.met.map { $0 ? "#276749" : "#c53030" } ?? "#555"
        legend += "<text x=\"\(left)\" y=\"\(ly)\" font-size=\"10\" fill=\"\(color)\">[\(mark)] \(esc(t.name)): \(t.measured.map { fmt($0, 3) } ?? "-")</text>\n"
        ly += 13
    }
    let height = ly + 20
    let width = left + labelW + plotW + 60
    return """
    <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif">
    <rect width="100%" height="100%" fill="white"/>
    <text x="\(left)" y="24" font-size="16" font-weight="bold">\(esc(title))</text>
    \(body)\(legend)</svg>

    """
}
