using System.Text.Json;
using LoraPS.Models;
using LoraPS.Tests.Adapters;
using LoraPS.Training;
using TorchSharp;
using Xunit;
using static LoraPS.Tests.Training.TrainingTestFiles;
using static TorchSharp.torch;

namespace LoraPS.Tests.Training;

/// <summary>
/// The training loop on stories260K: determinism, overfitting, accumulation equivalence, exact resume after a
/// cancellation, divergence, flat memory, and the run folder's files.
/// </summary>
[Collection(TrainingCollection.Name)]
public class LoraTrainerTests
{
    [Fact]
    public void TheSameSeedGivesTheSameLossesAndAdapter()
    {
        using var folder = new TempFolder();
        var results = new List<TrainingResult>();
        foreach (var run in new[] { "a", "b" })
        {
            using var model = Stories(dropout: 0.1);
            results.Add(LoraTrainer.Run(model, Arithmetic(model), Options(folder.Sub(run)) with { MaxSteps = 3 }));
        }
        Assert.Equal(Losses(folder.Sub("a")), Losses(folder.Sub("b")));
        using var scope = NewDisposeScope();
        var a = AdapterTensors(results[0].AdapterPath);
        var b = AdapterTensors(results[1].AdapterPath);
        foreach (var (key, tensor) in a) TensorAssert.Equal(tensor, b[key], key);
        // A different seed gives a different batch order and dropout.
        using var other = Stories(dropout: 0.1);
        LoraTrainer.Run(other, Arithmetic(other), Options(folder.Sub("c")) with { MaxSteps = 3, Seed = 2 });
        Assert.NotEqual(Losses(folder.Sub("a")), Losses(folder.Sub("c")));
    }

    [Fact]
    public void LossFallsOnATinySetItCanMemorize()
    {
        using var folder = new TempFolder();
        using var model = Stories(dropout: 0.0);
        var data = Arithmetic(model, count: 4, validationFraction: 0);
        var result = LoraTrainer.Run(model, data, Options(folder.Path) with
        {
            MaxSteps = 40, GlobalBatchSize = 4, MicroBatchSize = 4,
            Optimizer = new OptimizerOptions { LearningRate = 2e-2, WeightDecay = 0 },
            Schedule = new LearningRateSchedule { Kind = ScheduleKind.Constant, WarmupSteps = 0 },
        });
        var losses = Losses(folder.Path);
        Assert.Equal(40, losses.Count);
        Assert.True(losses[^1] < 0.5 * losses[0], $"loss {losses[0]:F3} → {losses[^1]:F3}");
        Assert.Equal(losses[^1], result.FinalTrainLoss);
        Assert.Equal(losses.Min(), result.BestTrainLoss);
    }

    [Fact]
    public void AccumulatingFourMicroBatchesEqualsOneBatchOfFour()
    {
        using var folder = new TempFolder();
        var adapters = new List<Dictionary<string, Tensor>>();
        using var scope = NewDisposeScope();
        foreach (var (name, micro) in new[] { ("micro1", 1), ("micro4", 4) })
        {
            using var model = Stories(dropout: 0.0);
            var data = EqualLength(count: 8, length: 12, vocab: model.VocabSize, seed: 3);
            var result = LoraTrainer.Run(model, data, Options(folder.Sub(name)) with { MaxSteps = 3, GlobalBatchSize = 4, MicroBatchSize = micro });
            Assert.Equal(1.5, result.Epochs, 10); // 3 steps × 4 of 8 examples
            adapters.Add(AdapterTensors(result.AdapterPath));
        }
        var (l1, l4) = (Losses(folder.Sub("micro1")), Losses(folder.Sub("micro4")));
        for (int i = 0; i < 3; i++) Assert.Equal(l4[i], l1[i], 1e-5);
        foreach (var (key, tensor) in adapters[0]) TensorAssert.Close(adapters[1][key], tensor, 1e-5, key);
    }

    [Fact]
    public void AnInterruptedAndResumedRunEndsBitIdentical()
    {
        using var folder = new TempFolder();
        using var scope = NewDisposeScope();
        Dictionary<string, Tensor> uninterrupted;
        using (var model = Stories(dropout: 0.1))
        {
            var result = LoraTrainer.Run(model, Arithmetic(model), Options(folder.Sub("full")) with { SaveInterval = 2 });
            uninterrupted = AdapterTensors(result.AdapterPath);
        }

        using var cts = new CancellationTokenSource();
        using (var model = Stories(dropout: 0.1))
        {
            var progress = new SyncProgress<TrainingProgress>(p => { if (p.Step == 3) cts.Cancel(); });
            var partial = LoraTrainer.Run(model, Arithmetic(model), Options(folder.Sub("cut")) with { SaveInterval = 2 }, progress, cts.Token);
            Assert.Equal(StopReason.Cancelled, partial.StopReason);
            Assert.Equal(3, partial.Steps);
            Assert.EndsWith(Path.Combine("checkpoints", "step-000003"), partial.LastCheckpoint);
            Assert.Equal(partial.LastCheckpoint + Path.DirectorySeparatorChar + "adapter", partial.AdapterPath);
            Assert.False(Directory.Exists(folder.Sub("cut", "final")));
        }
        using (var model = Stories(withAdapter: false))
        {
            var resumed = LoraTrainer.Resume(folder.Sub("cut"), model, Arithmetic(model));
            Assert.Equal(StopReason.Completed, resumed.StopReason);
            Assert.Equal(6, resumed.Steps);
            var adapter = AdapterTensors(resumed.AdapterPath);
            Assert.Equal(uninterrupted.Keys.Order(), adapter.Keys.Order());
            foreach (var (key, tensor) in uninterrupted) TensorAssert.Equal(tensor, adapter[key], key);
        }
        Assert.Equal(Losses(folder.Sub("full")), Losses(folder.Sub("cut")));
    }

    [Fact]
    public void AResumeAfterACrashDropsTheMetricsOfLostSteps()
    {
        using var folder = new TempFolder();
        using var scope = NewDisposeScope();
        Dictionary<string, Tensor> uninterrupted;
        using (var model = Stories(dropout: 0.1))
            uninterrupted = AdapterTensors(LoraTrainer.Run(model, Arithmetic(model), Options(folder.Path) with { SaveInterval = 4 }).AdapterPath);
        var losses = Losses(folder.Path);
        // As if the process had died after step 6's metrics, before it finished: the last checkpoint is step 4's.
        Assert.Equal("step-000004", File.ReadAllText(folder.Sub("checkpoints", "latest")));
        Directory.Delete(folder.Sub("final"), recursive: true);
        File.Delete(folder.Sub("trainer_state.json"));   // written only once the run completed
        using var fresh = Stories(withAdapter: false);
        var resumed = LoraTrainer.Resume(folder.Path, fresh, Arithmetic(fresh));
        Assert.Equal(6, resumed.Steps);
        Assert.Equal(losses, Losses(folder.Path));
        foreach (var (key, tensor) in uninterrupted) TensorAssert.Equal(tensor, AdapterTensors(resumed.AdapterPath)[key], key);
    }

    [Fact]
    public void ClassificationValidationReportsAccuracy()
    {
        using var folder = new TempFolder();
        using var model = LoraModel.Load(LoraPS.Tests.Models.ModelTestFiles.Stories260K, head: ModelHeadKind.SequenceClassification, numLabels: 2);
        model.Adapters.Add("default", new LoraPS.Adapters.LoraConfig { Rank = 2, Alpha = 4 }, seed: 1);
        var all = LoraPS.Data.DatasetReader.ReadFile(LoraPS.Tests.Data.DataFixtures.Sst2("train"));
        var data = LoraPS.Data.DataPreparation.Prepare(all.WithExamples(all.Examples.Take(16).ToList()), model.Tokenizer,
            new LoraPS.Data.DataPreparationOptions { ValidationFraction = 0.5 });
        var result = LoraTrainer.Run(model, data, Options(folder.Path) with { MaxSteps = 2, EvaluateAtEnd = true });
        Assert.NotNull(result.FinalValidation!.Accuracy);
        Assert.InRange(result.FinalValidation.Accuracy!.Value, 0, 1);
        Assert.Equal(8, result.FinalValidation.Examples);
        Assert.Equal(8, result.FinalValidation.Tokens);
        Assert.Contains("val_accuracy", File.ReadAllLines(folder.Sub("metrics.jsonl"))[^1]);
    }

    [Fact]
    public void ANonFiniteLossStopsWithTheLastGoodCheckpointKept()
    {
        using var folder = new TempFolder();
        using var model = Stories(dropout: 0.0);
        // Poison a LoRA factor after step 1 has been checkpointed: step 2's loss is NaN.
        var progress = new SyncProgress<TrainingProgress>(p =>
        {
            if (p.Step != 1) return;
            using var noGrad = no_grad();
            model.Adapters.LoraLayers.Values.First().LoraB("default").fill_(float.NaN);
        });
        var e = Assert.Throws<TrainingDivergedException>(() =>
            LoraTrainer.Run(model, Arithmetic(model), Options(folder.Path) with { SaveInterval = 1 }, progress));
        Assert.Equal(2, e.Step);
        Assert.Equal("loss", e.Quantity);
        Assert.True(double.IsNaN(e.Value));
        Assert.Equal(folder.Sub("checkpoints", "step-000001"), e.LastCheckpoint);
        Assert.Contains("Training diverged at step 2: the loss is NaN", e.Message);
        Assert.Contains("step-000001", e.Message);
        Assert.Equal("step-000001", File.ReadAllText(folder.Sub("checkpoints", "latest")));
        using var scope = NewDisposeScope();
        Assert.All(AdapterTensors(folder.Sub("checkpoints", "step-000001", "adapter")).Values, t => Assert.True(t.isfinite().all().item<bool>()));
        Assert.Single(File.ReadAllLines(folder.Sub("metrics.jsonl")));
        Assert.False(model.Network.training);
    }

    [Fact]
    public void LiveTensorsStayFlatOverManySteps()
    {
        using var folder = new TempFolder();
        using var model = Stories(dropout: 0.1);
        var stats = DisposeScopeManager.Statistics;
        long before = stats.ThreadTotalLiveCount;
        var counts = new Dictionary<long, long>();
        var progress = new SyncProgress<TrainingProgress>(p => counts[p.Step] = stats.ThreadTotalLiveCount);
        LoraTrainer.Run(model, Arithmetic(model), Options(folder.Path) with
        {
            MaxSteps = 120, GlobalBatchSize = 1, MicroBatchSize = 1, EvalInterval = 40, EvalMaxBatches = 2, SaveInterval = 60,
        }, progress);
        Assert.Equal(counts[2], counts[120]);
        Assert.Equal(counts[2], counts[61]);
        Assert.Equal(before, stats.ThreadTotalLiveCount);
    }

    [Fact]
    public void TheRunFolderHoldsManifestMetricsCheckpointsAndFinalAdapter()
    {
        using var folder = new TempFolder();
        using var model = Stories();
        var data = Arithmetic(model);
        var reports = new List<TrainingProgress>();
        var result = LoraTrainer.Run(model, data, Options(folder.Path) with { SaveInterval = 2, KeepCheckpoints = 2, EvalInterval = 3, EvaluateAtEnd = true },
            new SyncProgress<TrainingProgress>(reports.Add));

        Assert.Equal(StopReason.Completed, result.StopReason);
        Assert.Equal((6, 6L), (result.Steps, result.MaxSteps));
        Assert.Equal(folder.Path, result.RunFolder);
        Assert.Equal(folder.Sub("final"), result.AdapterPath);
        Assert.Equal(model.TrainableParameters, result.TrainableParameters);
        Assert.Equal(model.TotalParameters, result.TotalParameters);
        Assert.True(result.Tokens > 0 && result.TokensPerSecond > 0 && result.PeakMemoryBytes > 0 && result.WallTime > TimeSpan.Zero);
        Assert.NotNull(result.FinalValidationLoss);
        Assert.Equal(Math.Min(reports[2].Validation!.Loss, reports[5].Validation!.Loss), result.BestValidationLoss);
        Assert.Equal(Math.Exp(result.FinalValidation!.Loss), result.FinalValidation.Perplexity, 10);
        Assert.Null(result.FinalValidation.Accuracy);
        Assert.Equal(6, reports.Count);
        Assert.Equal([1L, 2, 3, 4, 5, 6], reports.Select(r => r.Step));
        Assert.Equal(0.0, reports[0].LearningRate);
        Assert.Equal(5e-3, reports[2].LearningRate, 12);

        using (var json = JsonDocument.Parse(File.ReadAllText(folder.Sub("run.json"))))
        {
            var root = json.RootElement;
            Assert.Equal(1337, root.GetProperty("seed").GetInt64());
            Assert.Equal(6, root.GetProperty("max_steps").GetInt64());
            Assert.Equal(2, root.GetProperty("accumulation_steps").GetInt32());
            Assert.Equal(data.Fingerprint, root.GetProperty("data").GetProperty("fingerprint").GetString());
            Assert.Equal("stories260K", root.GetProperty("model").GetProperty("name").GetString());
            Assert.Equal("AdamW", root.GetProperty("options").GetProperty("optimizer").GetProperty("kind").GetString());
            Assert.Equal(4, root.GetProperty("adapter").GetProperty("rank").GetInt32());
            Assert.False(string.IsNullOrEmpty(root.GetProperty("torch_sharp_version").GetString()));
        }
        var lines = File.ReadAllLines(folder.Sub("metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(6, lines.Count);
        foreach (var key in new[] { "step", "epoch", "loss", "lr", "grad_norm", "tokens", "tokens_per_second", "elapsed_s" })
            Assert.True(lines[0].TryGetProperty(key, out _), key);
        Assert.True(lines[2].TryGetProperty("val_loss", out _) && lines[2].TryGetProperty("val_perplexity", out _));
        Assert.False(lines[1].TryGetProperty("val_loss", out _));

        // Checkpoints at 2, 4, 6; only the newest two are kept, and latest names the last.
        Assert.Equal(["latest", "step-000004", "step-000006"], new TempFolderView(folder.Sub("checkpoints")).Entries());
        Assert.Equal("step-000006", File.ReadAllText(folder.Sub("checkpoints", "latest")));
        Assert.Equal(["adapter", "optimizer.safetensors", "trainer_state.json"], new TempFolderView(folder.Sub("checkpoints", "step-000006")).Entries());
        Assert.Equal(["adapter_config.json", "adapter_model.safetensors"], new TempFolderView(folder.Sub("final")).Entries());

        // The final adapter is PEFT's format and loads onto a fresh model with the same outputs.
        using var fresh = Stories(withAdapter: false);
        fresh.Adapters.Load(result.AdapterPath);
        using var scope = NewDisposeScope();
        var ids = tensor(new long[] { 1, 20, 30, 40, 50 }, [1, 5]);
        model.Network.eval();
        using var noGrad = no_grad();
        TensorAssert.Equal(model.Network.forward(ids), fresh.Network.forward(ids), "logits");
    }

    [Fact]
    public void MaxTimeStopsAfterTheCurrentStepAndWritesTheAdapter()
    {
        using var folder = new TempFolder();
        using var model = Stories();
        var result = LoraTrainer.Run(model, Arithmetic(model), Options(folder.Path) with { MaxTime = TimeSpan.FromTicks(1) });
        Assert.Equal(StopReason.MaxTime, result.StopReason);
        Assert.Equal(1, result.Steps);
        Assert.Equal(folder.Sub("checkpoints", "step-000001"), result.LastCheckpoint);
        Assert.True(File.Exists(folder.Sub("final", "adapter_model.safetensors")));
    }

    [Fact]
    public void Bf16ModelsTrainFp32Adapters()
    {
        using var folder = new TempFolder();
        using var model = Stories(precision: Precision.BF16);
        var result = LoraTrainer.Run(model, Arithmetic(model), Options(folder.Path) with { MaxSteps = 2 });
        Assert.True(double.IsFinite(result.FinalTrainLoss!.Value));
        Assert.All(model.Adapters.TrainableNamedParameters(), p => Assert.Equal(ScalarType.Float32, p.Parameter.dtype));
        Assert.Equal(ScalarType.BFloat16, model.Network.DType);
    }

    [Fact]
    public void BadSetupsFailBeforeAnythingIsWritten()
    {
        using var folder = new TempFolder();
        using (var bare = Stories(withAdapter: false))
        {
            var data = Arithmetic(bare);
            Assert.Contains("has no adapter to train", Assert.Throws<InvalidOperationException>(() => LoraTrainer.Run(bare, data, Options(folder.Sub("x")))).Message);
            Assert.Throws<ArgumentException>(() => LoraTrainer.Run(bare, data, Options(folder.Sub("x")) with { GlobalBatchSize = 3 }));
            Assert.False(Directory.Exists(folder.Sub("x")));
        }
        using var model = Stories();
        LoraTrainer.Run(model, Arithmetic(model), Options(folder.Sub("run")) with { MaxSteps = 1, SaveInterval = 1 });
        Assert.Contains("already holds a training run", Assert.Throws<IOException>(() => LoraTrainer.Run(model, Arithmetic(model), Options(folder.Sub("run")))).Message);
        using var other = Stories(withAdapter: false);
        Assert.Contains("already did all 1 steps", Assert.Throws<InvalidOperationException>(() => LoraTrainer.Resume(folder.Sub("run"), other, Arithmetic(other))).Message);
        Assert.Contains("differs from the data", Assert.Throws<ArgumentException>(() => LoraTrainer.Resume(folder.Sub("run"), other, Arithmetic(other, count: 20))).Message);
    }

    [Fact]
    public void ACompletedRunIsNotResumedFromAnEarlierCheckpoint()
    {
        using var folder = new TempFolder();
        using (var model = Stories())
            LoraTrainer.Run(model, Arithmetic(model), Options(folder.Sub("run")) with { MaxSteps = 3, SaveInterval = 2 });
        Assert.Equal("step-000002", File.ReadAllText(folder.Sub("run", "checkpoints", "latest")));
        Assert.True(File.Exists(folder.Sub("run", "trainer_state.json")));
        using var other = Stories(withAdapter: false);
        Assert.Contains("already did all 3 steps", Assert.Throws<InvalidOperationException>(() => LoraTrainer.Resume(folder.Sub("run"), other, Arithmetic(other))).Message);
        Assert.Empty(other.Adapters.Names);
    }
}

/// <summary>Sorted entry names of a folder.</summary>
internal readonly record struct TempFolderView(string Path)
{
    public IReadOnlyList<string> Entries() =>
        Directory.EnumerateFileSystemEntries(Path).Select(System.IO.Path.GetFileName).Order(StringComparer.Ordinal).ToList()!;
}
