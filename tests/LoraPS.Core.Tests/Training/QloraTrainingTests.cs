using LoraPS.Adapters;
using LoraPS.Checkpoints;
using LoraPS.Models;
using LoraPS.Quantization;
using LoraPS.Tests.Adapters;
using LoraPS.Tests.Models;
using LoraPS.Training;
using Xunit;
using static LoraPS.Tests.Training.TrainingTestFiles;
using static TorchSharp.torch;

namespace LoraPS.Tests.Training;

/// <summary>QLoRA end to end on stories260K: training on a quantized base, the run folder, merging to full precision.</summary>
[Collection(TrainingCollection.Name)]
public class QloraTrainingTests
{
    static LoraModel Quantized(string format = "nf4-dq")
    {
        var model = LoraModel.Load(ModelTestFiles.Stories260K, quantization: QuantizationOptions.Parse(format));
        model.Adapters.Add("default", new LoraConfig { Rank = 4, Alpha = 8, Dropout = 0, TargetModules = ModuleSelection.AllLinear }, seed: 7);
        return model;
    }

    static Dictionary<string, Tensor> Codes(LoraModel model) =>
        model.Adapters.LoraLayers.Where(l => l.Value.IsBaseQuantized)
            .ToDictionary(l => l.Key, l => l.Value.QuantizedBaseLayer!.Weight.Data.clone());

    [Fact]
    public void TrainingOnAQuantizedBaseLowersTheLossAndLeavesTheCodesAlone()
    {
        using var folder = new TempFolder();
        using var model = Quantized();
        using var scope = NewDisposeScope();
        var before = Codes(model);
        Assert.Equal(35, before.Count);
        var data = Arithmetic(model, count: 4, validationFraction: 0);
        var result = LoraTrainer.Run(model, data, Options(folder.Path) with
        {
            MaxSteps = 20, GlobalBatchSize = 4, MicroBatchSize = 4,
            Optimizer = new OptimizerOptions { LearningRate = 2e-2, WeightDecay = 0 },
            Schedule = new LearningRateSchedule { Kind = ScheduleKind.Constant, WarmupSteps = 0 },
        });
        var losses = Losses(folder.Path);
        Assert.True(losses[^1] < 0.7 * losses[0], $"loss {losses[0]:F3} → {losses[^1]:F3}");
        foreach (var (path, codes) in Codes(model)) TensorAssert.Equal(before[path], codes, path);
        var manifest = new RunFolder(folder.Path).ReadManifest();
        Assert.Equal("nf4-dq", manifest.Model.Quantization);
        // The adapter is saved in PEFT's format, as for a full-precision base.
        using var plain = Stories(dropout: 0);
        var keys = AdapterTensors(result.AdapterPath).Keys.Order().ToList();
        using var plainFolder = new TempFolder();
        plain.Adapters.Save(plainFolder.Path);
        Assert.Equal(AdapterTensors(RunFolder.AdapterPath(plainFolder.Path, "default")).Keys.Order().ToList(), keys);
    }

    [Fact]
    public void MergingAQuantizedModelWritesAFullPrecisionCheckpoint()
    {
        using var folder = new TempFolder();
        using var model = Quantized("nf4");
        using var scope = NewDisposeScope();
        foreach (var layer in model.Adapters.LoraLayers.Values)
        {
            using var noGrad = no_grad();
            layer.LoraB("default").normal_(0, 0.05, new Generator(3));
        }
        Assert.True(model.Adapters.IsBaseQuantized);
        var error = Assert.Throws<InvalidOperationException>(() => model.Adapters.MergeInPlace());
        Assert.Contains("re-quantize", error.Message);

        var target = model.Adapters.MergeAndSave(Path.Combine(folder.Path, "merged"));
        using (var file = SafetensorsFile.Open(Path.Combine(target, "model.safetensors")))
        {
            Assert.All(file.Entries, e => Assert.Equal("F32", e.DType.ToString()));
            Assert.DoesNotContain(file.Entries, e => e.Name.Contains("absmax") || e.Name.Contains("base_layer"));
            Assert.Contains(file.Entries, e => e.Name == "model.layers.0.mlp.down_proj.weight");
        }
        using var merged = LoraModel.Load(target);
        Assert.Null(merged.Quantization);
        var ids = tensor(new long[] { 1, 403, 407, 261, 378 }).view(1, -1);
        TensorAssert.Close(model.Network.forward(ids), merged.Network.forward(ids), 1e-4, "merged = quantized base + adapter");
    }

    [Fact]
    public void ResumingOnADifferentlyQuantizedModelIsRefused()
    {
        using var folder = new TempFolder();
        using (var model = Quantized())
        {
            LoraTrainer.Run(model, Arithmetic(model, count: 8), Options(folder.Path) with { MaxSteps = 4, SaveInterval = 2 });
        }
        using var plain = Stories(withAdapter: false);
        // The quantization is checked first, before anything else about the run.
        var error = Record.Exception(() => LoraTrainer.Resume(folder.Path, plain, Arithmetic(plain, count: 8)));
        Assert.NotNull(error);
        Assert.IsType<InvalidOperationException>(error);
        Assert.Contains("quantized", error.Message);
    }
}
