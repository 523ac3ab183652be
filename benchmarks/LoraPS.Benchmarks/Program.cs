using LoraPS.Benchmarks.Benchmarks;
using LoraPS.Benchmarks.Harness;
using TorchSharp;

namespace LoraPS.Benchmarks;

/// <summary>
/// <c>dotnet run -c Release --project benchmarks/LoraPS.Benchmarks -- &lt;benchmark&gt; [options]</c>. Each benchmark
/// prints a table and writes benchmarks/results/&lt;benchmark&gt;.json.
/// </summary>
public static class Program
{
    /// <summary>Every benchmark; add new ones here.</summary>
    static readonly IBenchmark[] Benchmarks = [new LoraLayerBenchmark(), new GenerationBenchmark(), new EvalBenchmark(), new QloraBenchmark(), new TrainingBenchmark(), new SoakBenchmark(), new LoraGaBenchmark()];

    public static int Main(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help" or "list")
        {
            PrintUsage(Console.Out);
            return args.Length == 0 ? 1 : 0;
        }
        var benchmark = Benchmarks.FirstOrDefault(b => b.Name == args[0]);
        if (benchmark is null)
        {
            Console.Error.WriteLine($"Unknown benchmark '{args[0]}'.");
            PrintUsage(Console.Error);
            return 2;
        }
        BenchmarkOptions options;
        try
        {
            options = BenchmarkOptions.Parse(args[1..]);
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine(e.Message);
            return 2;
        }
        if (options.Threads is { } threads) torch.set_num_threads(threads);

        Console.WriteLine($"{benchmark.Name}: {benchmark.Description}");
        Console.WriteLine($"machine: {MachineInfo.Current()}");
        var report = benchmark.Run(options, Console.Out);
        if (options.WritesReport)
            Console.WriteLine($"wrote {report.Write(options.OutputPath)}");
        return 0;
    }

    static void PrintUsage(TextWriter writer)
    {
        writer.WriteLine("usage: dotnet run -c Release --project benchmarks/LoraPS.Benchmarks -- <benchmark> " + BenchmarkOptions.Usage);
        writer.WriteLine("benchmarks:");
        foreach (var b in Benchmarks) writer.WriteLine($"  {b.Name,-14} {b.Description}");
    }
}
