using LoraPS.Adapters;
using LoraPS.Models;
using LoraPS.Tests.Adapters;
using LoraPS.Training;
using Xunit;
using static TorchSharp.torch;

namespace LoraPS.Tests.Training;

/// <summary>LoRA-GA end to end on stories260K with real data: unchanged output, progress, cancellation, cache reuse.</summary>
[Collection(TrainingCollection.Name)]
public class LoraGaInitializerTests
{
    static readonly LoraConfig Config = new() { Rank = 4, Alpha = 8, UseRsLora = true, TargetModules = ModuleSelection.AllLinear };

    static Tensor Logits(LoraModel model, PreparedDataBatch batch)
    {
        using var noGrad = no_grad();
        var output = model.Network.Forward(batch.Ids, batch.Mask);
        var logits = output.Logits!;
        output.DisposeAllBut(logits);
        return logits;
    }

    sealed record PreparedDataBatch(Tensor Ids, Tensor Mask);

    static PreparedDataBatch FirstBatch(LoraModel model, LoraPS.Data.PreparedData data)
    {
        using var batch = LoraPS.Data.BatchCollator.Collate([data.Train[0], data.Train[1], data.Train[2]]);
        return new PreparedDataBatch(batch.InputIds.clone().DetachFromDisposeScope(), batch.AttentionMask.clone().DetachFromDisposeScope());
    }

    [Fact]
    public void InitializingStoriesKeepsItsLogitsAndReportsProgress()
    {
        using var scope = NewDisposeScope();
        using var model = TrainingTestFiles.Stories(withAdapter: false);
        var data = TrainingTestFiles.Arithmetic(model, count: 16);
        var batch = FirstBatch(model, data);
        var before = Logits(model, batch);
        var reports = new List<LoraGaProgress>();
        var result = LoraGaInitializer.Initialize(model.Adapters, "default", Config, data, new LoraGaOptions { Batches = 6, BatchSize = 2 },
            progress: new SyncProgress<LoraGaProgress>(reports.Add));

        // All 35 linears rewritten (rsLoRA, s = 4): float32 rounding of W − s·B·A accumulates over 5 layers to a few
        // 1e-5 on logits of magnitude ~20, i.e. ~1e-6 relative; the fixture model (14 layers) stays within 1e-5 absolute.
        double scale = before.abs().max().item<float>();
        TensorAssert.Close(before, Logits(model, batch), 1e-5 * Math.Max(1, scale), $"logits after LoRA-GA init (max |logit| {scale:F1})");
        Assert.Equal(5 * 7, result.Layers);
        Assert.Equal(6, result.Batches);
        Assert.True(double.IsFinite(result.MeanLoss) && result.MeanLoss > 0);
        Assert.Equal(Enumerable.Range(1, 6), reports.Where(r => r.Phase == LoraGaPhase.Gradients).Select(r => r.Done));
        Assert.Equal(35, reports.Count(r => r.Phase == LoraGaPhase.Decomposition));
        Assert.All(model.Network.parameters(), p => Assert.Null(p.grad));
        // Only the adapter trains afterwards, and it is not a no-op: B·A ≠ 0.
        Assert.All(model.Adapters.TrainableNamedParameters(), p => Assert.Contains(".lora_", p.Name));
        var layer = model.Adapters.LoraLayers["model.layers.0.self_attn.q_proj"];
        Assert.True(layer.LoraB("default").abs().max().item<float>() > 0);
    }

    [Fact]
    public void CancellationLeavesTheModelUnchanged()
    {
        using var scope = NewDisposeScope();
        using var model = TrainingTestFiles.Stories(withAdapter: false);
        var data = TrainingTestFiles.Arithmetic(model, count: 16);
        var weight = model.Adapters.BaseWeightAt("model.layers.0.self_attn.q_proj").clone();
        using var cts = new CancellationTokenSource();
        var progress = new SyncProgress<LoraGaProgress>(p => { if (p.Done == 2) cts.Cancel(); });
        Assert.ThrowsAny<OperationCanceledException>(() =>
            LoraGaInitializer.Initialize(model.Adapters, "default", Config, data, new LoraGaOptions { Batches = 6 }, progress: progress, cancellationToken: cts.Token));
        Assert.Empty(model.Adapters.Names);
        TensorAssert.Equal(weight, model.Adapters.BaseWeightAt("model.layers.0.self_attn.q_proj"));
        Assert.All(model.Network.parameters(), p => Assert.False(p.requires_grad));
    }

    [Fact]
    public void TheGradientCacheIsWrittenThenReusedForTheSameFactors()
    {
        using var folder = new TempFolder();
        using var scope = NewDisposeScope();
        var cache = folder.Sub("grads.safetensors");
        Tensor firstA;
        using (var model = TrainingTestFiles.Stories(withAdapter: false))
        {
            var data = TrainingTestFiles.Arithmetic(model, count: 16);
            var result = LoraGaInitializer.Initialize(model.Adapters, "default", Config, data, new LoraGaOptions { Batches = 4 }, cache);
            Assert.False(result.UsedCachedGradients);
            firstA = model.Adapters.LoraLayers["model.layers.1.mlp.up_proj"].LoraA("default").detach().clone();
        }
        Assert.True(File.Exists(cache));
        using var again = TrainingTestFiles.Stories(withAdapter: false);
        var reused = LoraGaInitializer.Initialize(again.Adapters, "default", Config, data: null, new LoraGaOptions { Batches = 4 }, cache);
        Assert.True(reused.UsedCachedGradients);
        Assert.Equal(4, reused.Batches);
        TensorAssert.Close(firstA, again.Adapters.LoraLayers["model.layers.1.mlp.up_proj"].LoraA("default"), 1e-6);
    }
}
