using System.Text;

namespace LoraPS.Benchmarks.Harness;

/// <summary>A plain-text table with right-aligned numbers, for the console.</summary>
public sealed class ResultTable(params string[] headers)
{
    readonly List<string[]> _rows = [];

    public void Add(params object[] cells)
    {
        if (cells.Length != headers.Length) throw new ArgumentException($"The table has {headers.Length} columns, got {cells.Length} cells.");
        _rows.Add(cells.Select(Format).ToArray());
    }

    static string Format(object cell) => cell switch
    {
        double d => d.ToString(d >= 100 ? "F1" : "F2", System.Globalization.CultureInfo.InvariantCulture),
        float f => Format((double)f),
        _ => Convert.ToString(cell, System.Globalization.CultureInfo.InvariantCulture) ?? "",
    };

    public override string ToString()
    {
        var widths = headers.Select((h, i) => Math.Max(h.Length, _rows.Count == 0 ? 0 : _rows.Max(r => r[i].Length))).ToArray();
        var sb = new StringBuilder();
        sb.AppendLine(string.Join("  ", headers.Select((h, i) => h.PadLeft(widths[i]))));
        sb.AppendLine(string.Join("  ", widths.Select(w => new string('-', w))));
        foreach (var row in _rows) sb.AppendLine(string.Join("  ", row.Select((c, i) => c.PadLeft(widths[i]))));
        return sb.ToString();
    }
}
