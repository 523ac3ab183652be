using LoraPS.Benchmarks.Harness;
using LoraPS.Data;
using LoraPS.Models;
using LoraPS.Training;
using TorchSharp;

namespace LoraPS.Benchmarks.Benchmarks;

/// <summary>
/// Memory soak: trains stories260K with a LoRA adapter on the bundled two-digit additions for thousands of steps through
/// <see cref="LoraTrainer.Run"/> (variable-length padded batches, validation and checkpoints included), sampling the
/// process RSS and TorchSharp's live tensor count every <see cref="SampleEvery"/> steps. A leak shows as a growing
/// live-tensor count or an RSS slope; the report gives first/last/max and the least-squares slope per 1000 steps.
/// </summary>
public sealed class SoakBenchmark : IBenchmark
{
    const int Steps = 2000;
    const int QuickSteps = 300;
    const int SampleEvery = 100;

    public string Name => "soak";

    public string Description => $"process memory and live tensors over {Steps} LoRA training steps of stories260K (sampled every {SampleEvery})";

    sealed record Sample(long Step, double RssMb, long LiveTensors, double ElapsedSeconds);

    sealed record Summary(long Steps, int MicroBatch, double FirstRssMb, double LastRssMb, double MaxRssMb, double RssSlopeMbPer1000Steps,
        long FirstLiveTensors, long LastLiveTensors, long MaxLiveTensors, double LiveTensorSlopePer1000Steps, long LiveTensorsAfterRun,
        long LiveTensorsBeforeRun, double TokensPerSecond, double WallSeconds, string SlopeFrom);

    public BenchmarkReport Run(BenchmarkOptions options, TextWriter output)
    {
        int steps = options.Quick ? QuickSteps : Steps;
        const int microBatch = 2;
        var stats = DisposeScopeManager.Statistics;
        using var model = LoraModel.Load(LoraModel.BundledModelPath);
        model.Adapters.Add("default", TrainingModels.Adapter(8), seed: 7);
        var root = Directory.GetParent(LoraModel.BundledModelPath)!.Parent!.FullName;
        var dataset = DatasetReader.ReadFile(Path.Combine(root, "data", "arithmetic", "two_digit_addition.jsonl"));
        var data = DataPreparation.Prepare(dataset, model.Tokenizer, new DataPreparationOptions { ValidationFraction = 0.1 });
        long liveBefore = stats.ThreadTotalLiveCount;

        var samples = new List<Sample>();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var progress = new SyncProgress<TrainingProgress>(p =>
        {
            if (p.Step % SampleEvery != 0 && p.Step != 1) return;
            var sample = new Sample(p.Step, ProcessMemory.CurrentRssBytes() / 1048576.0 ?? double.NaN, stats.ThreadTotalLiveCount, clock.Elapsed.TotalSeconds);
            samples.Add(sample);
            output.WriteLine($"step {sample.Step,5}: RSS {sample.RssMb,7:F1} MB, live tensors {sample.LiveTensors,5}, {sample.ElapsedSeconds,6:F1} s");
        });
        var folder = TrainingModels.TempRunFolder();
        TrainingResult result;
        try
        {
            // Validation and a checkpoint every 500 steps, so their code paths soak too.
            result = LoraTrainer.Run(model, data, TrainingModels.TrainOnly(folder, microBatch, steps) with
            {
                EvalInterval = 500, EvalMaxBatches = 10, SaveInterval = 500, KeepCheckpoints = 2,
            }, progress);
        }
        finally
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        }
        long liveAfter = stats.ThreadTotalLiveCount;

        // The slope from the second sample on: the first steps grow the allocator's and the optimizer's state.
        var steady = samples.Where(s => s.Step >= 2 * SampleEvery).ToList();
        var summary = new Summary(steps, microBatch, samples[0].RssMb, samples[^1].RssMb, samples.Max(s => s.RssMb),
            1000 * Slope(steady, s => s.RssMb), samples[0].LiveTensors, samples[^1].LiveTensors, samples.Max(s => s.LiveTensors),
            1000 * Slope(steady, s => s.LiveTensors), liveAfter, liveBefore, result.TokensPerSecond, clock.Elapsed.TotalSeconds,
            $"step {2 * SampleEvery}");
        output.WriteLine();
        output.WriteLine($"RSS MB first/last/max {summary.FirstRssMb:F1}/{summary.LastRssMb:F1}/{summary.MaxRssMb:F1}, slope {summary.RssSlopeMbPer1000Steps:F2} MB per 1000 steps");
        output.WriteLine($"live tensors first/last/max {summary.FirstLiveTensors}/{summary.LastLiveTensors}/{summary.MaxLiveTensors}, slope {summary.LiveTensorSlopePer1000Steps:F2} per 1000 steps; before run {liveBefore}, after {liveAfter}");
        var settings = new { steps, micro_batch = microBatch, sample_every = SampleEvery, data = "data/arithmetic/two_digit_addition.jsonl (10% validation)",
            adapter = "r8 alpha 16 dropout 0.05 all-linear", eval_interval = 500, save_interval = 500 };
        return new BenchmarkReport(Name, settings, [summary, samples]);
    }

    /// <summary>Least-squares slope of <paramref name="value"/> over the step number.</summary>
    static double Slope(IReadOnlyList<Sample> samples, Func<Sample, double> value)
    {
        if (samples.Count < 2) return 0;
        double meanX = samples.Average(s => (double)s.Step), meanY = samples.Average(value);
        double num = samples.Sum(s => (s.Step - meanX) * (value(s) - meanY));
        double den = samples.Sum(s => (s.Step - meanX) * (s.Step - meanX));
        return num / den;
    }
}
