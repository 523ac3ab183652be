using LoraPS.Adapters;
using LoraPS.Checkpoints;
using LoraPS.Models;
using LoraPS.Quantization;
using LoraPS.Tests.Adapters;
using LoraPS.Tests.Models;
using LoraPS.Training;
using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;
using OptimizerOptions = LoraPS.Training.OptimizerOptions;
using Xunit;
using static LoraPS.Tests.Training.TrainingTestFiles;
using static TorchSharp.torch;

namespace LoraPS.Tests.Training;

/// <summary>8-bit AdamW: close to fp32 AdamW, a quarter of its state, and saved and restored exactly.</summary>
[Collection(TrainingCollection.Name)]
public class AdamW8bitTests
{
    /// <summary>Least squares y = X·w + b with a 64×128 weight (8-bit state) and a 64-element bias (fp32 state).</summary>
    static (List<double> Losses, Parameter W, Optimizer Optimizer) Fit(OptimizerKind kind, int steps)
    {
        var g = new Generator(11);
        var x = randn(256, 128, generator: g);
        var target = randn(64, 128, generator: g) * 0.3;
        var y = x.matmul(target.t()) + 0.5;
        var w = new Parameter(zeros(64, 128));
        var b = new Parameter(zeros(64));
        var optimizer = Optimizer.Create([("w", w), ("b", b)], new OptimizerOptions { Kind = kind, LearningRate = 0.05, WeightDecay = 0.01 });
        var losses = new List<double>();
        for (int i = 0; i < steps; i++)
        {
            using var scope = NewDisposeScope();
            optimizer.ZeroGrad();
            var loss = (x.matmul(w.t()) + b - y).pow(2).mean();
            loss.backward();
            optimizer.Step();
            losses.Add(loss.item<float>());
        }
        return (losses, w, optimizer);
    }

    [Fact]
    public void EightBitStateFollowsTheFp32TrajectoryWithAQuarterOfTheMemory()
    {
        var (fp32, w32, adam) = Fit(OptimizerKind.AdamW, 60);
        var (int8, w8, adam8) = Fit(OptimizerKind.AdamW8bit, 60);
        using (adam)
        using (adam8)
        {
            Assert.True(int8[^1] < 0.05 * int8[0], $"8-bit loss {int8[0]:F3} → {int8[^1]:F4}");
            for (int i = 0; i < 60; i += 10) Assert.True(Math.Abs(int8[i] - fp32[i]) <= 0.05 * fp32[i] + 1e-3, $"step {i}: {int8[i]} vs {fp32[i]}");
            var drift = (w8 - w32).abs().max().item<float>() / w32.abs().max().item<float>();
            Assert.InRange(drift, 0, 0.05);
            // The weight's state is 8-bit codes + absmax; the bias (64 elements < 4096) keeps fp32 moments.
            Assert.Contains("w.exp_avg_codes", adam8.State.Keys);
            Assert.Equal(ScalarType.Byte, adam8.State["w.exp_avg_sq_codes"].dtype);
            Assert.Contains("b.exp_avg", adam8.State.Keys);
            Assert.DoesNotContain("w.exp_avg", adam8.State.Keys);
            long fp32Bytes = adam.StateBytes, int8Bytes = adam8.StateBytes;
            // w: 8192 · 8 bytes → 8192 · 2 + 32 blocks · 8; b: 64 · 8 both.
            Assert.Equal(8192 * 8 + 64 * 8, fp32Bytes);
            Assert.Equal(8192 * 2 + 32 * 8 + 64 * 8, int8Bytes);
        }
    }

    [Fact]
    public void SavedEightBitStateContinuesBitForBit()
    {
        using var folder = new TempFolder();
        var (_, w, optimizer) = Fit(OptimizerKind.AdamW8bit, 5);
        using var scope = NewDisposeScope();
        var path = Path.Combine(folder.Path, "optimizer.safetensors");
        optimizer.Save(path);
        var copy = new Parameter(w.detach().clone());
        using var restored = Optimizer.Create([("w", copy), ("b", new Parameter(zeros(64)))], new OptimizerOptions { Kind = OptimizerKind.AdamW8bit, LearningRate = 0.05 });
        restored.Load(path);
        foreach (var (key, t) in optimizer.State) TensorAssert.Equal(t, restored.State[key], key);
        using var file = SafetensorsFile.Open(path);
        Assert.Equal("AdamW8bitOptimizer", file.Metadata["optimizer"]);
        // An fp32 AdamW refuses the file.
        using var other = Optimizer.Create([("w", new Parameter(zeros(64, 128))), ("b", new Parameter(zeros(64)))], new OptimizerOptions());
        Assert.Throws<InvalidDataException>(() => other.Load(path));
        optimizer.Dispose();
    }

    [Fact]
    public void AQloraRunWithEightBitAdamResumesBitIdentical()
    {
        using var folder = new TempFolder();
        using var scope = NewDisposeScope();
        static LoraModel Model(bool adapter)
        {
            var model = LoraModel.Load(ModelTestFiles.Stories260K, quantization: QuantizationOptions.Parse("nf4-dq"));
            // Rank 32: down_proj's lora_A (32·172) and the MLP's lora_B (172·32) have ≥ 4096 elements, so 8-bit state is really used.
            if (adapter) model.Adapters.Add("default", new LoraConfig { Rank = 32, Alpha = 16, Dropout = 0, TargetModules = ModuleSelection.AllLinear }, seed: 7);
            return model;
        }
        var options = Options("") with { MaxSteps = 4, SaveInterval = 2, Optimizer = new OptimizerOptions { Kind = OptimizerKind.AdamW8bit, LearningRate = 5e-3 } };
        Dictionary<string, Tensor> uninterrupted;
        using (var model = Model(adapter: true))
            uninterrupted = AdapterTensors(LoraTrainer.Run(model, Arithmetic(model), options with { OutputDirectory = folder.Sub("full") }).AdapterPath);
        using (var file = SafetensorsFile.Open(Path.Combine(folder.Sub("full", "checkpoints", "step-000004"), RunFolder.OptimizerFile)))
            Assert.Contains(file.Entries, e => e.Name.EndsWith("exp_avg_codes", StringComparison.Ordinal));

        using var cts = new CancellationTokenSource();
        using (var model = Model(adapter: true))
        {
            var progress = new SyncProgress<TrainingProgress>(p => { if (p.Step == 2) cts.Cancel(); });
            LoraTrainer.Run(model, Arithmetic(model), options with { OutputDirectory = folder.Sub("cut") }, progress, cts.Token);
        }
        using (var model = Model(adapter: false))
        {
            var resumed = LoraTrainer.Resume(folder.Sub("cut"), model, Arithmetic(model));
            Assert.Equal(4, resumed.Steps);
            var adapter = AdapterTensors(resumed.AdapterPath);
            foreach (var (key, tensor) in uninterrupted) TensorAssert.Equal(tensor, adapter[key], key);
        }
        Assert.Equal(Losses(folder.Sub("full")), Losses(folder.Sub("cut")));
    }
}
