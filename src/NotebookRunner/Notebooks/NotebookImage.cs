namespace LoraPS.Notebooks;

/// <summary>
/// A PNG for a notebook's output. Returned by <see cref="LoraPlot"/>; when it reaches the end of a pwsh cell's
/// pipeline, is a C# cell's last value or is passed to <see cref="Notebook.Display"/>, the runner stores it as an
/// <c>image/png</c> display output.
/// </summary>
public sealed class NotebookImage(byte[] png, int width, int height)
{
    public byte[] Png { get; } = png;
    public int Width { get; } = width;
    public int Height { get; } = height;

    /// <summary>Writes the PNG to <paramref name="path"/> (e.g. to keep a plot beside a report).</summary>
    public void Save(string path) => File.WriteAllBytes(path, Png);

    public override string ToString() => $"<image/png {Width}x{Height}>";
}
