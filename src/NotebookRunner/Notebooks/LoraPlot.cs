using ScottPlot;

namespace LoraPS.Notebooks;

/// <summary>One named line of a <see cref="LoraPlot.Line"/> chart.</summary>
public sealed record PlotSeries(string Name, double[] X, double[] Y)
{
    /// <summary>A series over x = 1, 2, 3, … (e.g. one loss per step).</summary>
    public static PlotSeries Steps(string name, double[] y) => new(name, Enumerable.Range(1, y.Length).Select(i => (double)i).ToArray(), y);
}

/// <summary>
/// The notebooks' few chart kinds, drawn with ScottPlot into PNGs: loss curves, bars and a labelled heatmap for
/// sweeps. Usable from both kernels, e.g. in pwsh:
/// <code>[LoraPS.Notebooks.LoraPlot]::Line('Training loss', 'step', 'loss', @([LoraPS.Notebooks.PlotSeries]::Steps('AdamW', $losses)))</code>
/// </summary>
public static class LoraPlot
{
    public const int DefaultWidth = 720;
    public const int DefaultHeight = 420;

    /// <summary>Lines (with a legend when there is more than one); <paramref name="logY"/> draws log10(y).</summary>
    public static NotebookImage Line(string title, string xLabel, string yLabel, PlotSeries[] series, bool logY = false,
        int width = DefaultWidth, int height = DefaultHeight)
    {
        var plot = NewPlot(title, xLabel, logY ? $"log10({yLabel})" : yLabel);
        var all = series;
        foreach (var s in all)
        {
            if (s.X.Length != s.Y.Length) throw new ArgumentException($"Series '{s.Name}' has {s.X.Length} x values but {s.Y.Length} y values.");
            var ys = logY ? s.Y.Select(Math.Log10).ToArray() : s.Y;
            var line = plot.Add.ScatterLine(s.X, ys);
            line.LegendText = s.Name;
            line.LineWidth = 2;
        }
        if (all.Length > 1) plot.ShowLegend(Alignment.UpperRight);
        return Render(plot, width, height);
    }

    /// <summary>One bar per label.</summary>
    public static NotebookImage Bars(string title, string yLabel, string[] labels, double[] values,
        int width = DefaultWidth, int height = DefaultHeight)
    {
        if (labels.Length != values.Length) throw new ArgumentException($"{labels.Length} labels but {values.Length} values.");
        var plot = NewPlot(title, "", yLabel);
        var bars = plot.Add.Bars(values);
        for (int i = 0; i < bars.Bars.Count; i++) bars.Bars[i].Label = values[i].ToString("G4", System.Globalization.CultureInfo.InvariantCulture);
        bars.ValueLabelStyle.FontSize = 12;
        plot.Axes.Bottom.SetTicks(Enumerable.Range(0, labels.Length).Select(i => (double)i).ToArray(), labels);
        plot.Axes.Margins(bottom: 0);
        return Render(plot, width, height);
    }

    /// <summary>
    /// A grid of values (rows × columns, row 0 drawn at the top) with each cell's value written in it — the shape of a
    /// rank × alpha sweep.
    /// </summary>
    public static NotebookImage Heatmap(string title, string rowLabel, string[] rows, string columnLabel, string[] columns, double[][] values,
        string format = "F3", int width = DefaultWidth, int height = DefaultHeight)
    {
        if (values.Length != rows.Length || values.Any(r => r.Length != columns.Length))
            throw new ArgumentException($"Expected {rows.Length} rows of {columns.Length} values.");
        var grid = new double[rows.Length, columns.Length];
        for (int r = 0; r < rows.Length; r++)
            for (int c = 0; c < columns.Length; c++) grid[r, c] = values[r][c];

        var plot = NewPlot(title, columnLabel, rowLabel);
        var map = plot.Add.Heatmap(grid);
        map.Colormap = new ScottPlot.Colormaps.Viridis();
        // Cell (r, c) covers x ∈ [c, c+1], y ∈ [rows−r−1, rows−r]: ScottPlot draws row 0 at the top of the extent.
        map.Extent = new CoordinateRect(0, columns.Length, 0, rows.Length);
        plot.Add.ColorBar(map);
        double min = values.SelectMany(v => v).Min(), max = values.SelectMany(v => v).Max();
        for (int r = 0; r < rows.Length; r++)
            for (int c = 0; c < columns.Length; c++)
            {
                var text = plot.Add.Text(values[r][c].ToString(format, System.Globalization.CultureInfo.InvariantCulture), c + 0.5, rows.Length - r - 0.5);
                text.LabelAlignment = Alignment.MiddleCenter;
                text.LabelFontSize = 13;
                // Light text on the dark (low) end of viridis, dark text on the bright end.
                bool dark = max > min && (values[r][c] - min) / (max - min) < 0.6;
                text.LabelFontColor = dark ? Colors.White : Colors.Black;
            }
        plot.Axes.Bottom.SetTicks(Enumerable.Range(0, columns.Length).Select(c => c + 0.5).ToArray(), columns);
        plot.Axes.Left.SetTicks(Enumerable.Range(0, rows.Length).Select(r => rows.Length - r - 0.5).ToArray(), rows);
        plot.Axes.SetLimits(0, columns.Length, 0, rows.Length);
        return Render(plot, width, height);
    }

    static Plot NewPlot(string title, string xLabel, string yLabel)
    {
        var plot = new Plot();
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(yLabel);
        return plot;
    }

    static NotebookImage Render(Plot plot, int width, int height) =>
        new(plot.GetImageBytes(width, height, ImageFormat.Png), width, height);
}
