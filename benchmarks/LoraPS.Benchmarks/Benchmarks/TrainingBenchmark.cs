using System.Diagnostics;
using System.Text.Json;
using LoraPS.Benchmarks.Harness;
using LoraPS.Models;
using LoraPS.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Benchmarks.Benchmarks;

/// <summary>
/// LoRA training steps (forward + backward + gradient norm + AdamW) through <see cref="LoraTrainer.Run"/> itself, for
/// stories260K and a random 8-layer hidden-512 Llama, ranks 8 and 64, fp32 and bf16 base weights, micro batches 1/4/8
/// of <see cref="SequenceLength"/> tokens (no padding, no accumulation). Reports tokens/s, time per step, peak RSS, and
/// achieved matmul FLOP/s (<see cref="TrainingFlops"/>) as a fraction of the square-matmul peak measured in the same run.
/// Every case also runs a PyTorch-eager-style step (<see cref="EagerLoraLlama"/>) on the same weights.
/// </summary>
/// <remarks>
/// Each case runs in a child process of this app, so its peak RSS is its own (a process never gives all freed memory
/// back, so cases run one after another would inherit each other's peaks). Step times are the gaps between the
/// trainer's progress reports, which come after each step's metrics line is written: the trainer's whole per-step cost.
/// </remarks>
public sealed class TrainingBenchmark : IBenchmark
{
    const int SequenceLength = 256;
    const int PeakSize = 2048;
    const string ChildVariable = "LORAPS_BENCH_CHILD";

    public string Name => "training";

    public string Description => $"LoRA training step tokens/s, peak RSS and FLOP/s vs matmul peak (seq {SequenceLength}; stories260K, random 8x512 Llama)";

    /// <summary>One case's result; the fractions are filled in by the parent from the peaks it measured.</summary>
    public sealed record Row(string Label, string Path, string Model, long Parameters, long TrainableParameters, string Dtype, int Rank,
        int MicroBatch, int SequenceLength, int Warmup, int Iterations, double MedianMs, double MinMs, double TokensPerSecond,
        double? PeakRssMb, double? RssBeforeModelMb, double FlopsPerToken, double AchievedGflops,
        double MedianCpuMs, double CpuGflops,
        double? FractionOfFp32Peak = null, double? FractionOfBf16Peak = null,
        double? CpuFractionOfFp32Peak = null, double? CpuFractionOfBf16Peak = null, double? FirstLoss = null, double? ReferenceLossDiff = null);

    sealed record Case(string Path, string Model, Precision Precision, int Rank, int MicroBatch)
    {
        public string Dtype => Precision == Precision.BF16 ? "bf16" : "fp32";
        public string Label => $"{Path}:{Model}/{Dtype}/r{Rank}/mb{MicroBatch}";
        bool Big => Model == TrainingModels.RandomLlama;

        /// <summary>Warm-up and timed steps: the hidden-512 cases take seconds per step, so at most 1 + 3 there.</summary>
        public (int Warmup, int Iterations) Steps(BenchmarkOptions o) =>
            Big ? (Math.Min(o.Warmup, 1), Math.Min(o.Iterations, 3)) : (o.Warmup, o.Iterations);
    }

    static IEnumerable<Case> Cases(bool quick)
    {
        int[] micro = quick ? [8, 1] : [8, 4, 1];
        // The hidden-512 model first: its micro-batch-8 cases are the goal.
        foreach (var model in new[] { TrainingModels.RandomLlama, TrainingModels.Stories })
        foreach (var precision in new[] { Precision.FP32, Precision.BF16 })
        // stories260K's k/v projections are 64 → 32 and LoraPS refuses a rank above min(in, out), so its "large" rank is 32.
        foreach (var rank in quick ? new[] { 8 } : model == TrainingModels.Stories ? [8, 32] : [8, 64])
        foreach (var mb in micro)
        {
            yield return new Case("loraps", model, precision, rank, mb);
            yield return new Case("eager", model, precision, rank, mb);
        }
    }

    public BenchmarkReport Run(BenchmarkOptions options, TextWriter output)
    {
        var cases = Cases(options.Quick).Where(c => options.Includes(c.Label)).ToList();
        if (Environment.GetEnvironmentVariable(ChildVariable) == "1")
            return new BenchmarkReport(Name, new { child = true }, cases.Select(c => (object)RunCase(c, options, output)).ToList());

        // The peaks first, with the same thread count the cases use.
        var peaks = new List<MatmulPeak>
        {
            MatmulPeak.Measure(ScalarType.Float32, PeakSize, warmup: 2, iterations: options.Quick ? 3 : 10),
            MatmulPeak.Measure(ScalarType.BFloat16, PeakSize, warmup: 1, iterations: options.Quick ? 1 : 3),
        };
        foreach (var p in peaks)
            output.WriteLine($"matmul peak {p.Dtype} {p.Size}x{p.Size}: best {p.BestGflops:F1} GFLOP/s, median {p.MedianGflops:F1} GFLOP/s, best per CPU-second {p.BestCpuGflops:F1}");
        double fp32Peak = peaks[0].BestGflops, bf16Peak = peaks[1].BestGflops;

        var table = new ResultTable("case", "warm+timed", "median ms/step", "tokens/s", "GFLOP/s", "% fp32 peak", "% bf16 peak",
            "cpu ms/step", "GFLOP/cpu-s", "% fp32 (cpu)", "% bf16 (cpu)", "peak RSS MB");
        var rows = new List<Row>();
        foreach (var c in cases)
        {
            var row = RunChild(c, options) with { };
            row = row with
            {
                FractionOfFp32Peak = row.AchievedGflops / fp32Peak, FractionOfBf16Peak = row.AchievedGflops / bf16Peak,
                CpuFractionOfFp32Peak = row.CpuGflops / peaks[0].BestCpuGflops, CpuFractionOfBf16Peak = row.CpuGflops / peaks[1].BestCpuGflops,
            };
            rows.Add(row);
            table.Add(c.Label, $"{row.Warmup}+{row.Iterations}", row.MedianMs, Math.Round(row.TokensPerSecond), row.AchievedGflops,
                100 * row.FractionOfFp32Peak!.Value, 100 * row.FractionOfBf16Peak!.Value, row.MedianCpuMs, row.CpuGflops,
                100 * row.CpuFractionOfFp32Peak!.Value, 100 * row.CpuFractionOfBf16Peak!.Value, row.PeakRssMb ?? double.NaN);
            output.WriteLine($"  {c.Label}: {row.MedianMs:F1} ms/step, {row.TokensPerSecond:F0} tokens/s, {row.AchievedGflops:F1} GFLOP/s, peak RSS {row.PeakRssMb:F0} MB");
            // Rewritten after every case, so an interrupted run keeps what it measured.
            if (options.WritesReport) Report(options, peaks, rows).Write(options.OutputPath);
        }
        output.WriteLine();
        output.Write(table);
        return Report(options, peaks, rows);
    }

    BenchmarkReport Report(BenchmarkOptions options, List<MatmulPeak> peaks, List<Row> rows)
    {
        var settings = new
        {
            sequence_length = SequenceLength, options.Warmup, options.Iterations, peaks,
            timing = "median of per-step wall times (gaps between LoraTrainer progress reports); eager: Timing.Measure of one step",
            adapter = "LoRA alpha=2r dropout=0.05 on all linear layers but lm_head, fp32 adapters, AdamW lr 1e-3 wd 0.01",
            flops = "TrainingFlops.PerToken: frozen base fwd + dL/dx, LoRA fwd+bwd, causal attention; elementwise ops not counted",
            random_llama = TrainingModels.RandomLlamaConfig.Replace("\n", " ").Replace("  ", ""),
        };
        return new BenchmarkReport(Name, settings, rows.Cast<object>().ToList());
    }

    /// <summary>Runs one case in a child process of this app and reads its row back.</summary>
    Row RunChild(Case c, BenchmarkOptions options)
    {
        var (warmup, iterations) = c.Steps(options);
        var resultFile = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"loraps-training-{Guid.NewGuid():N}.json");
        var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (System.IO.Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet")
            start.ArgumentList.Add(typeof(TrainingBenchmark).Assembly.Location);
        foreach (var a in new[] { Name, "--only", c.Label, "--out", resultFile, "--warmup", warmup.ToString(), "--iterations", iterations.ToString() })
            start.ArgumentList.Add(a);
        if (options.Threads is { } threads) { start.ArgumentList.Add("--threads"); start.ArgumentList.Add(threads.ToString()); }
        start.Environment[ChildVariable] = "1";
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        try
        {
            if (process.ExitCode != 0 || !File.Exists(resultFile))
                throw new InvalidOperationException($"The case {c.Label} failed (exit {process.ExitCode}):\n{stdout}\n{stderr.Result}");
            using var doc = JsonDocument.Parse(File.ReadAllText(resultFile));
            var json = new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };
            return doc.RootElement.GetProperty("results").Deserialize<List<Row>>(json)!.Single();
        }
        finally
        {
            File.Delete(resultFile);
        }
    }

    /// <summary>One case, in this (child) process.</summary>
    static Row RunCase(Case c, BenchmarkOptions options, TextWriter output)
    {
        var (warmup, iterations) = (options.Warmup, options.Iterations);
        using (var _ = NewDisposeScope()) ones(1).add_(1);   // libtorch loaded before the baseline reading
        ProcessMemory.TryResetPeak();
        double? before = ProcessMemory.CurrentRssBytes() / 1048576.0;
        using var model = TrainingModels.Load(c.Model, c.Precision);
        model.Adapters.Add("default", TrainingModels.Adapter(c.Rank), seed: 7);
        int steps = warmup + iterations;
        var data = TrainingModels.RandomTokens(c.MicroBatch * steps, SequenceLength, model.VocabSize, seed: 11);
        double flopsPerToken = TrainingFlops.PerToken(model.Config, c.Rank, SequenceLength);
        int tokensPerStep = c.MicroBatch * SequenceLength;

        List<double> times, cpuTimes = [];
        double? firstLoss = null, referenceDiff = null;
        if (c.Path == "loraps")
        {
            var stamps = new List<long> { Stopwatch.GetTimestamp() };
            var cpuStamps = new List<double> { ProcessorTime.Milliseconds() };
            var folder = TrainingModels.TempRunFolder();
            try
            {
                var progress = new SyncProgress<TrainingProgress>(p =>
                {
                    stamps.Add(Stopwatch.GetTimestamp());
                    cpuStamps.Add(ProcessorTime.Milliseconds());
                    firstLoss ??= p.Loss;
                });
                LoraTrainer.Run(model, data, TrainingModels.TrainOnly(folder, c.MicroBatch, steps), progress);
            }
            finally
            {
                if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
            }
            times = Enumerable.Range(warmup + 1, iterations).Select(i => Stopwatch.GetElapsedTime(stamps[i - 1], stamps[i]).TotalMilliseconds).ToList();
            cpuTimes = Enumerable.Range(warmup + 1, iterations).Select(i => cpuStamps[i] - cpuStamps[i - 1]).ToList();
        }
        else
        {
            using var eager = new EagerLoraLlama(model, TrainingModels.Adapter(c.Rank));
            int next = 0;
            (firstLoss, referenceDiff) = eager.CheckAgainst(model, data, c.MicroBatch);
            var timing = Timing.Measure(() =>
            {
                double start = ProcessorTime.Milliseconds();
                eager.Step(data, c.MicroBatch, next++);
                if (next > warmup) cpuTimes.Add(ProcessorTime.Milliseconds() - start);
            }, warmup, iterations);
            times = timing.Milliseconds.ToList();
        }
        var t = new TimingResult(times);
        var cpuMedian = new TimingResult(cpuTimes).Median;
        var (counts, peak) = (model.Adapters.CountParameters(), ProcessMemory.PeakRssBytes() / 1048576.0);
        var row = new Row(c.Label, c.Path, c.Model, counts.Total, counts.Trainable, c.Dtype, c.Rank, c.MicroBatch, SequenceLength, warmup, iterations,
            t.Median, t.Min, tokensPerStep / (t.Median / 1000), peak, before, flopsPerToken, flopsPerToken * tokensPerStep / (t.Median / 1000) / 1e9,
            cpuMedian, flopsPerToken * tokensPerStep / (cpuMedian / 1000) / 1e9, FirstLoss: firstLoss, ReferenceLossDiff: referenceDiff);
        output.WriteLine($"{c.Label}: median {t.Median:F1} ms over {iterations} steps, {row.TokensPerSecond:F0} tokens/s");
        return row;
    }
}

/// <summary>Calls back on the reporting thread at once (System.Progress would post to the thread pool).</summary>
internal sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
