using LoraPS.Adapters;
using LoraPS.Models;
using LoraPS.Quantization;
using LoraPS.Tests.Adapters;
using LoraPS.Tests.Models;
using LoraPS.Tests.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LoraPS.Tests.Quantization;

/// <summary>
/// Quantizing a model in memory after its LoRA adapters were added (Start-LoraFinetune -Quantize): the result must be the
/// model that loading quantized and then adding the same adapters gives.
/// </summary>
[Collection(TrainingCollection.Name)]
public class QuantizeWithAdaptersTests
{
    static LoraConfig Config(bool dora = false, LoraInit? init = null) => new()
    {
        Rank = 4, Alpha = 8, Dropout = 0, TargetModules = ModuleSelection.AllLinear, UseDora = dora, Init = init ?? LoraInit.Default,
    };

    /// <summary>Adds the adapter with seed 7 and gives every lora_B the same non-zero values, so the update shows in the logits.</summary>
    static void AddAdapter(LoraModel model, bool dora = false)
    {
        model.Adapters.Add("default", Config(dora), seed: 7);
        var g = new Generator(3);
        using var noGrad = no_grad();
        foreach (var layer in model.Adapters.LoraLayers.Values) layer.LoraB("default").normal_(0, 0.05, g);
    }

    static Tensor Logits(LoraModel model)
    {
        using var noGrad = no_grad();
        return model.Network.forward(tensor(new long[] { 1, 403, 407, 261, 378, 300 }).view(1, -1));
    }

    [Theory]
    [InlineData("nf4-dq")]
    [InlineData("fp4")]
    [InlineData("int8")]
    public void QuantizingAfterAddingAnAdapterEqualsLoadingQuantizedThenAdding(string format)
    {
        using var scope = NewDisposeScope();
        var options = QuantizationOptions.Parse(format);
        using var inPlace = LoraModel.Load(ModelTestFiles.Stories260K);
        AddAdapter(inPlace);
        var trainable = inPlace.TrainableParameters;
        var summary = inPlace.Quantize(options);

        using var loaded = LoraModel.Load(ModelTestFiles.Stories260K, quantization: options);
        AddAdapter(loaded);

        Assert.Equal(loaded.Quantization, summary);
        Assert.Equal(format, inPlace.QuantizationFormat);
        Assert.Equal(loaded.BaseBitsPerParameter, inPlace.BaseBitsPerParameter);
        Assert.Equal(loaded.BaseBytesPerParameter, inPlace.BaseBytesPerParameter);
        // The load-time counts follow: the same memory as a model loaded quantized, the same parameters.
        Assert.Equal(loaded.MemoryBytes, inPlace.MemoryBytes);
        Assert.Equal(loaded.Parameters, inPlace.Parameters);
        Assert.Equal(trainable, inPlace.TrainableParameters);
        Assert.Contains(format, inPlace.ToString());

        foreach (var (path, layer) in loaded.Adapters.LoraLayers)
        {
            var other = inPlace.Adapters.LoraLayers[path];
            Assert.True(other.IsBaseQuantized, path);
            TensorAssert.Equal(layer.QuantizedBaseLayer!.Weight.Data, other.QuantizedBaseLayer!.Weight.Data, path + " codes");
            TensorAssert.Equal(layer.LoraA("default"), other.LoraA("default"), path + " A");
            Assert.True(other.LoraA("default").requires_grad, path + " A stays trainable");
        }
        // The state dict names are PEFT's, as for a model loaded quantized.
        Assert.Equal(loaded.Network.state_dict().Keys.Order(), inPlace.Network.state_dict().Keys.Order());
        TensorAssert.Close(Logits(loaded), Logits(inPlace), 1e-6, "logits");
    }

    [Fact]
    public void DoraKeepsItsMagnitudeAndMatchesTheSameAdapterOnAQuantizedLoad()
    {
        using var scope = NewDisposeScope();
        var options = QuantizationOptions.Parse("nf4");
        using var inPlace = LoraModel.Load(ModelTestFiles.Stories260K);
        AddAdapter(inPlace, dora: true);
        var magnitudes = inPlace.Adapters.LoraLayers.ToDictionary(l => l.Key, l => l.Value.Magnitude("default")!.detach().clone());
        inPlace.Quantize(options);

        // m is the adapter's parameter (its norm of W + s·B·A when added): quantizing the base leaves it, as loading a
        // DoRA adapter onto a quantized base does. The same A, B and m on a model loaded quantized give the same logits.
        using var loaded = LoraModel.Load(ModelTestFiles.Stories260K, quantization: options);
        loaded.Adapters.Add("default", Config(dora: true), seed: 7);
        foreach (var (path, layer) in inPlace.Adapters.LoraLayers)
        {
            TensorAssert.Equal(magnitudes[path], layer.Magnitude("default")!, path + " m");
            loaded.Adapters.LoraLayers[path].SetAdapterWeights("default", layer.LoraA("default"), layer.LoraB("default"), layer.Magnitude("default"));
        }
        TensorAssert.Close(Logits(loaded), Logits(inPlace), 1e-6, "logits");
    }

    [Fact]
    public void AClassificationHeadInModulesToSaveStaysFullPrecision()
    {
        using var scope = NewDisposeScope();
        var options = QuantizationOptions.Parse("nf4");
        LoraModel Classifier(QuantizationOptions? quantization)
        {
            var model = LoraModel.Load(ModelTestFiles.Stories260K, head: ModelHeadKind.SequenceClassification, numLabels: 3, quantization: quantization, seed: 5);
            AddAdapter(model);
            return model;
        }
        using var inPlace = Classifier(null);
        inPlace.Quantize(options);
        using var loaded = Classifier(options);
        Assert.Equal(["score"], inPlace.Adapters.SavedModuleWrappers.Keys);
        Assert.DoesNotContain(inPlace.Network.named_modules(), m => m.name.StartsWith("score", StringComparison.Ordinal) && m.module is QuantizedLinear);
        Assert.Equal(loaded.Quantization, inPlace.Quantization);
        TensorAssert.Close(Logits(loaded), Logits(inPlace), 1e-6, "class logits");
    }

    [Fact]
    public void AMergedAdapterIsRefusedAndTheModelIsLeftAsItWas()
    {
        using var scope = NewDisposeScope();
        using var model = LoraModel.Load(ModelTestFiles.Stories260K);
        AddAdapter(model);
        model.Adapters.MergeInPlace();
        var memory = model.MemoryBytes;
        var error = Assert.Throws<InvalidOperationException>(() => model.Quantize(QuantizationOptions.Parse("nf4")));
        Assert.Contains("merged", error.Message);
        Assert.Contains("Unmerge", error.Message);
        Assert.Null(model.Quantization);
        Assert.Equal(memory, model.MemoryBytes);
        Assert.DoesNotContain(model.Network.modules(), m => m is QuantizedLinear);

        // Unmerged, the same model quantizes.
        model.Adapters.Unmerge();
        Assert.Equal("nf4", model.Quantize(QuantizationOptions.Parse("nf4")).Format);
    }

    [Theory]
    [InlineData("pissa")]
    [InlineData("olora")]
    public void AnAdapterThatRewroteTheBaseIsRefused(string init)
    {
        using var scope = NewDisposeScope();
        using var model = LoraModel.Load(ModelTestFiles.Stories260K);
        model.Adapters.Add("default", Config(init: LoraInit.Parse(init)), seed: 7);
        var error = Assert.Throws<NotSupportedException>(() => model.Quantize(QuantizationOptions.Parse("nf4-dq")));
        Assert.Contains("rewrote the base weights", error.Message);
        Assert.Contains("Import-LoraModel -Quantize", error.Message);
        Assert.Null(model.Quantization);

        // Once that adapter is gone nothing depends on the rewritten base any more.
        model.Adapters.Delete("default");
        Assert.Equal("nf4-dq", model.Quantize(QuantizationOptions.Parse("nf4-dq")).Format);
    }

    [Fact]
    public void ALoraGaAdapterIsRefused()
    {
        using var scope = NewDisposeScope();
        using var model = LoraModel.Load(ModelTestFiles.Stories260K);
        // The path Initialize-LoraGA takes: factors per layer, then W ← W − s·B₀·A₀ (the factors' values do not matter here).
        var g = new Generator(11);
        model.Adapters.AddWithInitialFactors("ga", Config(init: LoraInit.LoraGA),
            (target, _) => (randn(target.Rank, target.InFeatures, generator: g) * 0.01, randn(target.OutFeatures, target.Rank, generator: g) * 0.01));
        var error = Assert.Throws<NotSupportedException>(() => model.Quantize(QuantizationOptions.Parse("nf4")));
        Assert.Contains("'ga' was initialised with LoraGA", error.Message);
        Assert.Null(model.Quantization);
    }

    [Fact]
    public void AQuantizedModelWithAdaptersIsNotQuantizedAgain()
    {
        using var model = LoraModel.Load(ModelTestFiles.Stories260K, quantization: QuantizationOptions.Parse("nf4"));
        AddAdapter(model);
        var error = Assert.Throws<AlreadyQuantizedException>(() => model.Quantize(QuantizationOptions.Parse("int8")));
        Assert.Contains("already quantized (nf4", error.Message);
        Assert.Equal("nf4", model.QuantizationFormat);
    }

    [Fact]
    public void OnlyTheBaseOfALoraLayerIsSelectedNeverItsAdapterWeights()
    {
        using var model = LoraModel.Load(ModelTestFiles.Stories260K);
        var before = ModelQuantizer.SelectTargets(model.Network, QuantizationOptions.Parse("nf4"));
        AddAdapter(model);
        var after = ModelQuantizer.SelectTargets(model.Network, QuantizationOptions.Parse("nf4"));
        Assert.Equal(before, after);
        Assert.DoesNotContain(after, p => p.Contains("lora_") || p.EndsWith("base_layer", StringComparison.Ordinal));
    }
}
