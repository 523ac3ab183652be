using System.Globalization;

namespace LoraPS.Benchmarks.Harness;

/// <summary>Command-line settings shared by all benchmarks.</summary>
/// <param name="Warmup">Untimed iterations before timing (JIT, allocator and kernel caches settle).</param>
/// <param name="Iterations">Timed iterations; the median is reported.</param>
/// <param name="OutputPath">The JSON report path; null = benchmarks/results/&lt;name&gt;.json in the repository.</param>
/// <param name="Threads">torch intra-op threads; null keeps torch's default (all cores).</param>
/// <param name="Quick">A smoke run: fewer cases and iterations, no report written unless --out is given.</param>
/// <param name="Only">Run only the cases whose label contains this text (e.g. <c>fp32</c>); no report written unless --out is given.</param>
public sealed record BenchmarkOptions(int Warmup, int Iterations, string? OutputPath, int? Threads, bool Quick, string? Only = null)
{
    public const string Usage = "[--warmup N] [--iterations N] [--threads N] [--out FILE] [--quick] [--only TEXT]";

    /// <summary>True when the case labelled <paramref name="label"/> should run.</summary>
    public bool Includes(string label) => Only is null || label.Contains(Only, StringComparison.OrdinalIgnoreCase);

    /// <summary>A partial run (quick or filtered) does not overwrite the committed report unless --out names a file.</summary>
    public bool WritesReport => OutputPath is not null || (!Quick && Only is null);

    /// <summary>Parses the arguments after the subcommand.</summary>
    /// <exception cref="ArgumentException">An unknown option or a bad number.</exception>
    public static BenchmarkOptions Parse(IReadOnlyList<string> args, int defaultWarmup = 3, int defaultIterations = 15)
    {
        int warmup = defaultWarmup, iterations = defaultIterations;
        int? threads = null;
        string? output = null;
        bool quick = false;
        string? only = null;
        for (int i = 0; i < args.Count; i++)
        {
            string Value() => i + 1 < args.Count ? args[++i] : throw new ArgumentException($"{args[i]} needs a value.");
            int Number(string name)
            {
                var text = Value();
                return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0
                    ? n
                    : throw new ArgumentException($"{name} must be a positive integer, got '{text}'.");
            }
            switch (args[i])
            {
                case "--warmup": warmup = Number("--warmup"); break;
                case "--iterations": iterations = Number("--iterations"); break;
                case "--threads": threads = Number("--threads"); break;
                case "--out": output = Value(); break;
                case "--quick": quick = true; break;
                case "--only": only = Value(); break;
                default: throw new ArgumentException($"Unknown option '{args[i]}'. Options: {Usage}");
            }
        }
        if (quick) (warmup, iterations) = (Math.Min(warmup, 1), Math.Min(iterations, 3));
        return new BenchmarkOptions(warmup, iterations, output, threads, quick, only);
    }
}
