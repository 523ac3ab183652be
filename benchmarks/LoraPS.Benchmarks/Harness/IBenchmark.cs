namespace LoraPS.Benchmarks.Harness;

/// <summary>
/// One benchmark, run as a subcommand of the app (<c>-- &lt;Name&gt;</c>). To add one, implement this interface and
/// list it in <c>Program.Benchmarks</c>; use <see cref="Timing"/>, <see cref="ProcessMemory"/>,
/// <see cref="ResultTable"/> and <see cref="BenchmarkReport"/> so every benchmark measures and reports alike.
/// </summary>
public interface IBenchmark
{
    /// <summary>The subcommand, e.g. <c>lora-layer</c>; also the JSON file name under benchmarks/results/.</summary>
    string Name { get; }

    /// <summary>One line for the command list.</summary>
    string Description { get; }

    /// <summary>Runs the benchmark, prints its table to <paramref name="output"/>, and returns what goes into the JSON report.</summary>
    BenchmarkReport Run(BenchmarkOptions options, TextWriter output);
}
