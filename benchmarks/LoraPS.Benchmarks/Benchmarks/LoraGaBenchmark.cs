using System.Diagnostics;
using System.Text.Json;
using LoraPS.Adapters;
using LoraPS.Benchmarks.Harness;
using LoraPS.Data;
using LoraPS.Models;
using LoraPS.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Benchmarks.Benchmarks;

/// <summary>
/// LoRA-GA (issue #6): (1) convergence — stories260K fine-tuned on GPT-3's two-digit addition (data/arithmetic, as
/// examples/finetune.ps1) with plain LoRA, LoRA-GA and PiSSA at the same rank, learning rate and steps, 3 seeds: per-step
/// losses, the step at which each first reaches plain LoRA's final loss, validation loss and greedy exact-match
/// accuracy on held-out sums; (2) memory — the peak RSS increase while LoRA-GA initialises vs while LoRA trains, on
/// stories260K and on a random 8-layer hidden-512 Llama where weights dominate.
/// </summary>
public sealed class LoraGaBenchmark : IBenchmark
{
    const int Rank = 8;
    const double Alpha = 16;
    const double LearningRate = 3e-3;
    const int BatchSize = 16;
    const int Warmup = 20;
    static readonly long[] Seeds = [1, 2, 3];

    public string Name => "lora-ga";

    public string Description => "LoRA vs LoRA-GA vs PiSSA convergence on two-digit addition (stories260K, 3 seeds) and LoRA-GA init memory";

    sealed record RunRow(string Method, long Seed, int Steps, double InitSeconds, double TrainSeconds, double FinalLoss,
        int? StepsToLoraFinal, double? ValidationLoss, double Accuracy, IReadOnlyList<double> Losses)
    {
        public string Kind => "run";
    }

    sealed record MethodRow(string Method, double MeanFinalLoss, double? MeanStepsToLoraFinal, int RunsReaching, double MeanValidationLoss,
        double MeanAccuracy, double MinAccuracy, double MaxAccuracy, double MeanInitSeconds)
    {
        public string Kind => "method";
    }

    sealed record MemoryRow(string Model, string Phase, string Detail, double BaselineRssMb, double PeakRssMb, double IncreaseMb, double Seconds)
    {
        public string Kind => "memory";
    }

    const string RandomLlamaConfig = """
        {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 32000, "hidden_size": 512,
         "intermediate_size": 1376, "num_hidden_layers": 8, "num_attention_heads": 8, "num_key_value_heads": 4,
         "max_position_embeddings": 1024, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
         "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2}
        """;

    public BenchmarkReport Run(BenchmarkOptions options, TextWriter output)
    {
        if (options.Only?.StartsWith(ChildPrefix, StringComparison.Ordinal) == true) return MeasureInChild(options.Only, options.Quick);
        int steps = options.Quick ? 20 : 200;
        var seeds = options.Quick ? Seeds[..1] : Seeds;
        var memory = options.Includes("memory") ? Memory(options.Quick, output) : [];
        var runs = options.Includes("convergence") ? Convergence(steps, seeds, output) : [];
        var methods = Summarize(runs);

        var table = new ResultTable("method", "final loss", "steps to LoRA's final", "runs reaching", "val loss", "exact match", "init s");
        foreach (var m in methods)
            table.Add(m.Method, m.MeanFinalLoss, m.MeanStepsToLoraFinal ?? double.NaN, $"{m.RunsReaching}/{seeds.Length}", m.MeanValidationLoss,
                $"{m.MeanAccuracy:P1} ({m.MinAccuracy:P0}-{m.MaxAccuracy:P0})", m.MeanInitSeconds);
        output.Write(table);
        var memoryTable = new ResultTable("model", "phase", "detail", "baseline MB", "peak MB", "increase MB", "s");
        foreach (var m in memory) memoryTable.Add(m.Model, m.Phase, m.Detail, m.BaselineRssMb, m.PeakRssMb, m.IncreaseMb, m.Seconds);
        output.Write(memoryTable);

        var settings = new
        {
            Task = "data/arithmetic/two_digit_addition.jsonl (context -> completion, plain prompt, prompt masked, 10% held out)",
            Model = "stories260K (fp32)",
            Rank,
            Alpha,
            TargetModules = "all-linear",
            LearningRate,
            BatchSize,
            Steps = steps,
            Warmup,
            Optimizer = "AdamW (torch defaults, weight decay 0.01)",
            Seeds = seeds,
            LoraGa = "official variant, ArB2r, stable gamma 16, 64 batches x 2, randomized SVD niter 4, rsLoRA (alpha/sqrt(r)) as in the paper",
            Pissa = "exact SVD, alpha/r",
            StepsToLoraFinal = "first step whose trailing 10-step mean loss <= plain LoRA's final loss (mean over seeds of its last-10-step mean)",
            Score = "greedy exact match of the completion tokens on the held-out sums (lm-eval arithmetic's is_greedy)",
            Load = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Trim() : null,
        };
        // One list for a notebook: rows of kind "method" (summary), "run" (per seed, with per-step losses) and "memory".
        return new BenchmarkReport(Name, settings, [.. methods, .. runs, .. memory]);
    }

    // ---- Convergence ---------------------------------------------------------------------------------------

    static List<RunRow> Convergence(int steps, long[] seeds, TextWriter output)
    {
        var raw = new List<(string Method, long Seed, double Init, double Train, List<double> Losses, double? Val, double Acc)>();
        foreach (var seed in seeds)
        {
            foreach (var method in new[] { "LoRA", "LoRA-GA", "LoRA-GA (alpha/r)", "PiSSA" })
            {
                var run = TrainOne(method, seed, steps);
                raw.Add(run);
                output.WriteLine($"  {method,-18} seed {seed}: final {TailMean(run.Losses):F4}, val {run.Val:F4}, exact match {run.Acc:P1}, init {run.Init:F1}s, train {run.Train:F1}s");
            }
        }
        double target = raw.Where(r => r.Method == "LoRA").Average(r => TailMean(r.Losses));
        return raw.Select(r => new RunRow(r.Method, r.Seed, steps, r.Init, r.Train, TailMean(r.Losses), StepReaching(r.Losses, target), r.Val, r.Acc, r.Losses)).ToList();
    }

    static List<MethodRow> Summarize(List<RunRow> runs) =>
        runs.GroupBy(r => r.Method).Select(g =>
        {
            var reached = g.Where(r => r.StepsToLoraFinal is not null).ToList();
            return new MethodRow(g.Key, g.Average(r => r.FinalLoss), reached.Count > 0 ? reached.Average(r => (double)r.StepsToLoraFinal!.Value) : null, reached.Count,
                g.Average(r => r.ValidationLoss ?? double.NaN), g.Average(r => r.Accuracy), g.Min(r => r.Accuracy), g.Max(r => r.Accuracy), g.Average(r => r.InitSeconds));
        }).ToList();

    const int Tail = 10;

    static double TailMean(List<double> losses) => losses.TakeLast(Tail).Average();

    static int? StepReaching(List<double> losses, double target)
    {
        for (int i = Tail - 1; i < losses.Count; i++)
            if (losses.Skip(i - Tail + 1).Take(Tail).Average() <= target) return i + 1;
        return null;
    }

    static (string Method, long Seed, double Init, double Train, List<double> Losses, double? Val, double Acc) TrainOne(string method, long seed, int steps)
    {
        using var model = LoraModel.Load(LoraModel.BundledModelPath);
        var data = Addition(model);
        var config = new LoraConfig { Rank = Rank, Alpha = Alpha, TargetModules = ModuleSelection.AllLinear };
        var clock = Stopwatch.StartNew();
        switch (method)
        {
            case "LoRA":
                model.Adapters.Add("default", config, seed);
                break;
            case "PiSSA":
                model.Adapters.Add("default", config with { Init = LoraInit.PiSSA }, seed);
                break;
            case "LoRA-GA":
                LoraGaInitializer.Initialize(model.Adapters, "default", config with { UseRsLora = true }, data, new LoraGaOptions { Seed = seed });
                break;
            case "LoRA-GA (alpha/r)":
                // Ablation: the same init with plain LoRA's scaling, to separate the init from rsLoRA's larger s.
                LoraGaInitializer.Initialize(model.Adapters, "default", config, data, new LoraGaOptions { Seed = seed });
                break;
        }
        double init = clock.Elapsed.TotalSeconds;
        var folder = Path.Combine(Path.GetTempPath(), $"loraps-bench-loraga-{Guid.NewGuid():N}");
        try
        {
            clock.Restart();
            var result = LoraTrainer.Run(model, data, new TrainingOptions
            {
                OutputDirectory = folder,
                MaxSteps = steps,
                GlobalBatchSize = BatchSize,
                MicroBatchSize = BatchSize,
                Optimizer = new OptimizerOptions { LearningRate = LearningRate },
                Schedule = new LearningRateSchedule { WarmupSteps = Warmup },
                Seed = seed,
                EvalInterval = 0,
                EvaluateAtEnd = true,
                EvalBatchSize = 50,
                SaveInterval = 0,
            });
            double train = clock.Elapsed.TotalSeconds;
            var losses = File.ReadLines(Path.Combine(folder, "metrics.jsonl"))
                .Select(l => JsonDocument.Parse(l).RootElement.GetProperty("loss").GetDouble()).ToList();
            return (method, seed, init, train, losses, result.FinalValidationLoss, ExactMatch(model, data));
        }
        finally
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        }
    }

    static PreparedData Addition(LoraModel model)
    {
        var path = Path.Combine(RepoRoot(), "data", "arithmetic", "two_digit_addition.jsonl");
        var dataset = DatasetReader.ReadFile(path, new DatasetReadOptions
        {
            Format = DatasetFormat.Instruction,
            Properties = new PropertyMapping { PromptProperty = "context", ResponseProperty = "completion" },
        });
        return DataPreparation.Prepare(dataset, model.Tokenizer, new DataPreparationOptions
        {
            ValidationFraction = 0.1,
            Tokenization = new TokenizationOptions { PromptStyle = PromptStyles.Plain, MaskPrompt = true },
        });
    }

    /// <summary>Share of held-out examples whose every completion token is the arg-max prediction (lm-eval's is_greedy).</summary>
    static double ExactMatch(LoraModel model, PreparedData data)
    {
        var validation = data.Validation!;
        var network = model.Network;
        network.eval();
        int correct = 0, total = 0;
        using var noGrad = no_grad();
        foreach (var indices in BatchSampler.ForEvaluation(validation.Lengths, 50))
        {
            using var scope = NewDisposeScope();
            using var batch = BatchCollator.Collate(indices.Select(i => validation[i]).ToList(), new CollateOptions { IgnoreIndex = Losses.IgnoreIndex });
            var logits = network.Forward(batch.InputIds, batch.AttentionMask).Logits!;
            var predicted = logits[.., ..^1].argmax(-1);
            var labels = batch.Labels[.., 1..];
            var scored = labels.ne(Losses.IgnoreIndex);
            var wrong = predicted.ne(labels).logical_and(scored).any(1);
            correct += (int)wrong.logical_not().sum().item<long>();
            total += batch.BatchSize;
        }
        return (double)correct / total;
    }

    static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "LoraPS.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("LoraPS.sln not found above the benchmark binaries.");
    }

    // ---- Memory --------------------------------------------------------------------------------------------

    const string ChildPrefix = "memory-child:";

    /// <summary>
    /// Each (model, phase) runs in its own child process (this app with <c>--only memory-child:…</c>): the allocator keeps
    /// freed pages, so a second phase in one process would reuse the first one's and look smaller than it is. Reported:
    /// the peak RSS (VmHWM) and its increase over the RSS after the model was built, i.e. what the phase itself needs.
    /// </summary>
    static List<MemoryRow> Memory(bool quick, TextWriter output)
    {
        var rows = new List<MemoryRow>();
        foreach (var model in new[] { "stories260K", "random-llama-8x512" })
        {
            foreach (var phase in new[] { "lora-step", "lora-ga-init" })
            {
                var file = Path.Combine(Path.GetTempPath(), $"loraps-loraga-memory-{Guid.NewGuid():N}.json");
                try
                {
                    var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardError = true };
                    if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") start.ArgumentList.Add(typeof(LoraGaBenchmark).Assembly.Location);
                    foreach (var a in new[] { "lora-ga", "--only", $"{ChildPrefix}{model}:{phase}", "--out", file }) start.ArgumentList.Add(a);
                    if (quick) start.ArgumentList.Add("--quick");
                    using var child = Process.Start(start)!;
                    var stdout = child.StandardOutput.ReadToEndAsync();
                    var stderr = child.StandardError.ReadToEnd();
                    child.WaitForExit();
                    if (child.ExitCode != 0) throw new InvalidOperationException($"memory child {model}/{phase} failed ({child.ExitCode}): {stderr}{stdout.Result}");
                    var row = JsonDocument.Parse(File.ReadAllText(file)).RootElement.GetProperty("results")[0];
                    rows.Add(new MemoryRow(row.GetProperty("model").GetString()!, row.GetProperty("phase").GetString()!, row.GetProperty("detail").GetString()!,
                        row.GetProperty("baseline_rss_mb").GetDouble(), row.GetProperty("peak_rss_mb").GetDouble(), row.GetProperty("increase_mb").GetDouble(), row.GetProperty("seconds").GetDouble()));
                }
                finally
                {
                    File.Delete(file);
                }
            }
            var lora = rows[^2];
            var ga = rows[^1];
            output.WriteLine($"  {model}: LoRA step +{lora.IncreaseMb:F1} MB, LoRA-GA init +{ga.IncreaseMb:F1} MB (increase ratio {ga.IncreaseMb / lora.IncreaseMb:F2}; peak ratio {ga.PeakRssMb / lora.PeakRssMb:F2}: {lora.PeakRssMb:F0} vs {ga.PeakRssMb:F0} MB)");
        }
        return rows;
    }

    /// <summary>The child side of <see cref="Memory"/>: one phase on a freshly built model.</summary>
    static BenchmarkReport MeasureInChild(string only, bool quick)
    {
        var parts = only[ChildPrefix.Length..].Split(':');
        string name = parts[0], phase = parts[1];
        using var stories = LoraModel.Load(LoraModel.BundledModelPath);
        var alpaca = DataPreparation.Prepare(
            DatasetReader.ReadFile(Path.Combine(RepoRoot(), "data", "alpaca", "alpaca_5000_subset.json")),
            stories.Tokenizer, new DataPreparationOptions { Tokenization = new TokenizationOptions { MaxSeqLength = 256 } });
        Func<TransformerModel> build = name == "stories260K"
            ? () => ModelLoader.Load(LoraModel.BundledModelPath).Model
            : () => { manual_seed(1234); return ModelFactory.Create(ModelConfig.Parse(RandomLlamaConfig, "random-llama-8x512"), ModelHeadKind.CausalLM); };
        // The gradient buffers do not grow with the batch count (one per target weight), so the large model uses fewer batches to save time.
        int batches = quick ? 2 : name == "stories260K" ? 64 : 4;
        // Batch 2 of up to 256 tokens for both: the estimate's batch and the LoRA step's micro-batch are the same.
        var row = phase == "lora-step"
            ? Measure(name, "LoRA training step", "r=8 all-linear, AdamW, 2 steps of batch 2", build, model =>
            {
                var set = new LoraAdapterSet(model);
                set.Add("default", new LoraConfig { Rank = Rank, Alpha = Alpha, TargetModules = ModuleSelection.AllLinear }, seed: 1);
                var parameters = set.TrainableNamedParameters();
                using var optimizer = Optimizer.Create(parameters, new OptimizerOptions { LearningRate = 1e-4 });
                model.train();
                for (int step = 0; step < 2; step++)
                {
                    using var scope = NewDisposeScope();
                    using var batch = Batch(alpaca, step);
                    optimizer.ZeroGrad();
                    model.ComputeLoss(model.Forward(batch.InputIds, batch.AttentionMask), batch.Labels).backward();
                    optimizer.Step();
                }
            })
            : Measure(name, "LoRA-GA init", $"r=8 all-linear, {batches} batches of 2, randomized SVD", build, model =>
            {
                var set = new LoraAdapterSet(model);
                LoraGaInitializer.Initialize(set, "default", new LoraConfig { Rank = Rank, Alpha = Alpha, UseRsLora = true, TargetModules = ModuleSelection.AllLinear },
                    alpaca, new LoraGaOptions { Batches = batches });
            });
        return new BenchmarkReport("lora-ga-memory-child", new { }, [row]);
    }

    static TrainingBatch Batch(PreparedData data, int index) =>
        BatchCollator.Collate([data.Train[2 * index], data.Train[2 * index + 1]], new CollateOptions { IgnoreIndex = Losses.IgnoreIndex });

    static MemoryRow Measure(string model, string phase, string detail, Func<TransformerModel> build, Action<TransformerModel> work)
    {
        using var network = build();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        ProcessMemory.TryResetPeak();
        double baseline = (ProcessMemory.CurrentRssBytes() ?? 0) / 1048576.0;
        var clock = Stopwatch.StartNew();
        work(network);
        double seconds = clock.Elapsed.TotalSeconds;
        double peak = (ProcessMemory.PeakRssBytes() ?? 0) / 1048576.0;
        return new MemoryRow(model, phase, detail, baseline, peak, peak - baseline, seconds);
    }
}
