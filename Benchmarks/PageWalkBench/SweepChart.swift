import Foundation

/// Line plots of the sweeps (`--sweep-svg`): per sweep, ns per page against
/// size on log-log axes, one line per workload, work and walker (the kernel's
/// smaps dotted), and beside it model bytes per mapped page; then the
/// flatness verdicts.
func sweepChart(_ sweeps: [SweepResult], title: String) -> String {
    let colors = ["dense-4k": "#2b6cb0", "thp-pmd": "#c05621", "mthp-64k": "#2f855a", "sparse": "#6b46c1"]
    func color(_ workload: String) -> String { colors[workload] ?? "#444" }
    func dash(_ walker: Walker?) -> String {
        switch walker {
        case .rangeBatched?: return ""
        case nil: return "2 3"
        default: return "7 4"
        }
    }
    func width(_ work: Work) -> Double { work == .raw ? 1.5 : 3 }
    var body = ""
    var y = 40.0
    let left = 60.0, mainW = 520.0, sideW = 220.0, plotH = 300.0, gap = 70.0
    for r in sweeps {
        let series = sweepSeries(r).filter { !$0.points.isEmpty }
        let unit = r.xUnit == "MiB" ? sizeLabel : countLabel
        let xs = r.points.map { Double($0.x) }
        guard let xlo = xs.min(), let xhi = xs.max() else { continue }
        body += text(left - 50, y, "sweep \(r.sweep): ns per page (log) against \(r.xUnit == "MiB" ? "model memory" : "VMAs") (log)", size: 14, bold: true)
        y += 12
        let top = y
        let nsAll = series.flatMap { $0.points.map(\.ns) }
        let main = LogAxes(x: (xlo, xhi), y: decades(nsAll), origin: (left, top), size: (mainW, plotH))
        body += main.grid(xLabel: { unit(Int($0)) }, xTicks: r.points.map { Double($0.x) })
        for s in series {
            body += main.polyline(s.points.map { (Double($0.x), $0.ns) }, color: color(s.workload),
                                  width: width(s.work), dash: dash(s.walker), title: s.name)
        }
        // Bytes per mapped page, per workload.
        let side = LogAxes(x: (xlo, xhi), y: decades(r.points.map(\.bytesPerMappedPage)),
                           origin: (left + mainW + gap, top), size: (sideW, plotH))
        body += text(side.origin.0, top - 14, "model bytes per mapped page", size: 11, bold: true)
        body += side.grid(xLabel: { unit(Int($0)) }, xTicks: [xlo, xhi])
        var workloads: [String] = []
        for p in r.points where !workloads.contains(p.workload) { workloads.append(p.workload) }
        for wl in workloads {
            let pts = r.points.filter { $0.workload == wl }.map { (Double($0.x), $0.bytesPerMappedPage) }
            body += side.polyline(pts, color: color(wl), width: 2, dash: "", title: "\(wl) bytes per mapped page")
        }
        y = top + plotH + 34
        // Legend: one entry per series.
        var lx = left - 50
        for s in series {
            let name = s.name
            if lx + 250 > left + mainW + gap + sideW { lx = left - 50; y += 14 }
            body += "<line x1=\"\(fmt(lx, 1))\" y1=\"\(fmt(y - 4, 1))\" x2=\"\(fmt(lx + 24, 1))\" y2=\"\(fmt(y - 4, 1))\" stroke=\"\(color(s.workload))\" stroke-width=\"\(width(s.work))\"" +
                    (dash(s.walker).isEmpty ? "" : " stroke-dasharray=\"\(dash(s.walker))\"") + "/>\n"
            body += text(lx + 28, y, name, size: 9)
            lx += 250
        }
        y += 22
        body += text(left - 50, y, "flat per-page cost: max/min ns/page over the sweep <= \(fmt(r.flatLimit, 1))", size: 11, bold: true)
        y += 14
        for t in r.flatness {
            let met = t.met ?? false
            body += text(left - 50, y, "[\(met ? "MET" : "MISSED")] \(t.name.replacingOccurrences(of: ": max/min ns/page <= \(fmt(r.flatLimit, 1))", with: "")): \(t.measured.map { fmt($0, 2) } ?? "-") (\(t.detail))",
                         size: 9, fill: met ? "#276749" : "#c53030")
            y += 12
        }
        for s in r.skipped {
            body += text(left - 50, y, "skipped: \(s.workload) \(s.label) \(s.what): \(s.reason)", size: 9, fill: "#555")
            y += 12
        }
        y += 36
    }
    let width = left + mainW + gap + sideW + 40
    let height = y
    return """
    <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif">
    <rect width="100%" height="100%" fill="white"/>
    \(text(10, 22, title, size: 15, bold: true))\(body)</svg>

    """
}

func svgEscape(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
}

func text(_ x: Double, _ y: Double, _ s: String, size: Int, bold: Bool = false, fill: String = "#000", anchor: String = "start") -> String {
    "<text x=\"\(fmt(x, 1))\" y=\"\(fmt(y, 1))\" font-size=\"\(size)\"\(bold ? " font-weight=\"bold\"" : "") fill=\"\(fill)\" text-anchor=\"\(anchor)\">\(svgEscape(s))</text>\n"
}

/// Whole decades around the values (log10 bounds).
func decades(_ values: [Double]) -> (Double, Double) {
    let v = values.filter { $0 > 0 }
    guard let lo = v.min(), let hi = v.max() else { return (1, 10) }
    let a = pow(10, floor(log10(lo))), b = pow(10, ceil(log10(hi)))
    return (a, b > a ? b : a * 10)
}

/// A plot area with log10 x and y axes.
struct LogAxes {
    var x: (Double, Double)
    var y: (Double, Double)
    var origin: (Double, Double)
    var size: (Double, Double)

    func px(_ v: Double) -> Double {
        let (a, b) = (log10(x.0), log10(x.1))
        return origin.0 + (b > a ? (log10(v) - a) / (b - a) : 0.5) * size.0
    }
    func py(_ v: Double) -> Double {
        let (a, b) = (log10(y.0), log10(y.1))
        return origin.1 + size.1 - (log10(Swift.max(v, y.0)) - a) / (b - a) * size.1
    }

    /// Frame, a line per decade of y (labelled), a tick per x value.
    func grid(xLabel: (Double) -> String, xTicks: [Double]) -> String {
        var s = "<rect x=\"\(fmt(origin.0, 1))\" y=\"\(fmt(origin.1, 1))\" width=\"\(fmt(size.0, 1))\" height=\"\(fmt(size.1, 1))\" fill=\"none\" stroke=\"#888\"/>\n"
        var d = y.0
        while d <= y.1 * 1.0001 {
            let gy = py(d)
            s += "<line x1=\"\(fmt(origin.0, 1))\" y1=\"\(fmt(gy, 1))\" x2=\"\(fmt(origin.0 + size.0, 1))\" y2=\"\(fmt(gy, 1))\" stroke=\"#ddd\"/>\n"
            s += text(origin.0 - 4, gy + 3, String(format: "%g", d), size: 9, fill: "#555", anchor: "end")
            d *= 10
        }
        for t in Set(xTicks).sorted() {
            let gx = px(t)
            s += "<line x1=\"\(fmt(gx, 1))\" y1=\"\(fmt(origin.1, 1))\" x2=\"\(fmt(gx, 1))\" y2=\"\(fmt(origin.1 + size.1, 1))\" stroke=\"#eee\"/>\n"
            s += text(gx, origin.1 + size.1 + 12, xLabel(t), size: 9, fill: "#555", anchor: "middle")
        }
        return s
    }

    func polyline(_ pts: [(Double, Double)], color: String, width: Double, dash: String, title: String) -> String {
        let coords = pts.map { "\(fmt(px($0.0), 1)),\(fmt(py($0.1), 1))" }.joined(separator: " ")
        var s = "<polyline points=\"\(coords)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"\(width)\"" +
                (dash.isEmpty ? "" : " stroke-dasharray=\"\(dash)\"") + "><title>\(svgEscape(title))</title></polyline>\n"
        for p in pts {
            s += "<circle cx=\"\(fmt(px(p.0), 1))\" cy=\"\(fmt(py(p.1), 1))\" r=\"2.5\" fill=\"\(color)\"><title>\(svgEscape(title)): \(fmtNS(p.1))</title></circle>\n"
        }
        return s
    }
}
