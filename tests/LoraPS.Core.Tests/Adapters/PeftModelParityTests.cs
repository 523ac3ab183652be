using LoraPS.Adapters;
using LoraPS.Checkpoints;
using LoraPS.Models;
using TorchSharp;
using Xunit;
using static LoraPS.Tests.Adapters.PeftModelTestFiles;
using static TorchSharp.torch;

namespace LoraPS.Tests.Adapters;

/// <summary>
/// The PEFT 0.10 reference adapters of tests/fixtures/peft loaded onto whole models with <see cref="LoraAdapterSet"/>:
/// logits and losses against PEFT's outputs.safetensors, merged weights against merged/model.safetensors, merged
/// logits against adapter logits, and the merged checkpoint reloaded. Tolerance 1e-5 (1e-6 for restored weights).
/// </summary>
public class PeftModelParityTests
{
    public static TheoryData<string> Variants() =>
        new(["tiny-llama-lora", "tiny-llama-rslora", "tiny-llama-dora", "tiny-bert-lora", "tiny-bert-rslora", "tiny-bert-dora"]);

    [Theory]
    [MemberData(nameof(Variants))]
    public void LoadedAdapterGivesPeftsLogitsAndLoss(string variant)
    {
        var model = ModelOf(variant);
        using var loaded = LoadBase(model);
        var set = new LoraAdapterSet(loaded.Model);
        var info = set.Load(AdapterTestFiles.PeftAdapterDir(variant));
        Assert.Equal(model == "tiny-llama" ? 14 : 13, info.Targets.Count);
        Assert.Equal(["default"], set.ActiveAdapters);

        using var scope = NewDisposeScope();
        var r = Reference(model);
        var o = Outputs(variant);
        TensorAssert.Close(o["logits_adapter"], Logits(loaded.Model, r), 1e-5, $"{variant} logits");
        Assert.Equal(o["loss_adapter"].item<float>(), Loss(loaded.Model, r), 1e-5);
        if (model == "tiny-llama")
        {
            var valid = r["padded.attention_mask"].to(ScalarType.Bool);
            TensorAssert.Close(o["padded.logits_adapter"][valid], Logits(loaded.Model, r, "padded.")[valid], 1e-5, $"{variant} padded logits");
            Assert.Equal(o["padded.loss_adapter"].item<float>(), Loss(loaded.Model, r, "padded."), 1e-5);
        }

        // PEFT: with the adapter disabled the logits are the base model's.
        using (set.DisabledScope())
            TensorAssert.Close(r["logits"], Logits(loaded.Model, r), 1e-5, $"{variant} disabled");
        TensorAssert.Close(o["logits_adapter"], Logits(loaded.Model, r), 1e-5, $"{variant} re-enabled");
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void MergeInPlaceGivesPeftsMergedWeightsAndLogitsAndUnmergeRestoresTheBase(string variant)
    {
        var model = ModelOf(variant);
        using var loaded = LoadBase(model);
        var set = new LoraAdapterSet(loaded.Model);
        set.Load(AdapterTestFiles.PeftAdapterDir(variant));
        using var scope = NewDisposeScope();
        var r = Reference(model);
        var o = Outputs(variant);
        var merged = ReadAll(AdapterTestFiles.Fixture("peft", variant, "merged", "model.safetensors"));
        var baseWeights = set.LoraLayers.ToDictionary(kv => kv.Key, kv => kv.Value.BaseLayer.weight!.detach().clone());
        var adapterLogits = Logits(loaded.Model, r);

        Assert.Equal(["default"], set.MergeInPlace());
        Assert.True(set.IsMerged);
        foreach (var (path, layer) in set.LoraLayers)
            TensorAssert.Close(merged[path + ".weight"], layer.BaseLayer.weight!, 1e-5, $"merged {path}");
        var mergedLogits = Logits(loaded.Model, r);
        TensorAssert.Close(o["logits_merged"], mergedLogits, 1e-5, "merged logits vs PEFT");
        TensorAssert.Close(adapterLogits, mergedLogits, 1e-5, "merged vs adapter logits");
        Assert.Empty(set.MergeInPlace()); // merging twice = merging once

        set.Unmerge();
        Assert.False(set.IsMerged);
        foreach (var (path, layer) in set.LoraLayers)
            TensorAssert.Close(baseWeights[path], layer.BaseLayer.weight!, 1e-6, $"unmerged {path}");
        TensorAssert.Close(adapterLogits, Logits(loaded.Model, r), 1e-5, "logits after unmerge");
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void MergeAndSaveWritesTheBaseKeysAndReloadsWithTheMergedLogits(string variant)
    {
        var model = ModelOf(variant);
        using var folder = new TempFolder();
        using var loaded = LoadBase(model);
        var set = new LoraAdapterSet(loaded.Model);
        set.Load(AdapterTestFiles.PeftAdapterDir(variant));
        using var scope = NewDisposeScope();
        var r = Reference(model);
        var adapterLogits = Logits(loaded.Model, r);

        var written = set.MergeAndSave(folder.Sub("merged"));
        Assert.Equal(folder.Sub("merged"), written);
        Assert.False(set.IsMerged); // the model in memory keeps its adapter
        TensorAssert.Close(adapterLogits, Logits(loaded.Model, r), 0, "model unchanged by MergeAndSave");
        // The fixture models have no tokenizer; tiny-llama's generation_config.json is copied along.
        Assert.Equal(model == "tiny-llama" ? ["config.json", "generation_config.json", "model.safetensors"] : ["config.json", "model.safetensors"], folder.Entries(written));
        Assert.Equal(["merged"], folder.Entries());

        using (var file = SafetensorsFile.Open(Path.Combine(written, "model.safetensors")))
        using (var peft = SafetensorsFile.Open(AdapterTestFiles.Fixture("peft", variant, "merged", "model.safetensors")))
        {
            Assert.Equal(peft.Entries.Select(e => e.Name).Order(StringComparer.Ordinal), file.Entries.Select(e => e.Name).Order(StringComparer.Ordinal));
            Assert.Equal("pt", file.Metadata["format"]);
            foreach (var e in peft.Entries)
            {
                Assert.Equal(SafetensorsDType.F32, file.GetEntry(e.Name).DType);
                TensorAssert.Close(peft.ReadTensor(e.Name), file.ReadTensor(e.Name), 1e-5, e.Name);
            }
        }

        using var reloaded = ModelLoader.Load(written, new ModelLoadOptions { Attention = AttentionImplementation.Eager });
        Assert.Empty(reloaded.Report.Unexpected);
        Assert.Empty(reloaded.Report.Missing);
        var reloadedLogits = Logits(reloaded.Model, r);
        TensorAssert.Close(Outputs(variant)["logits_merged"], reloadedLogits, 1e-5, "reloaded merged logits vs PEFT");
        TensorAssert.Close(adapterLogits, reloadedLogits, 1e-5, "reloaded merged vs adapter logits");
    }

    /// <summary>PEFT's print_trainable_parameters for these adapters (summary.json "trainable_parameters").</summary>
    [Theory]
    [InlineData("tiny-llama-lora", 8192L, 139584L)]
    [InlineData("tiny-llama-dora", 9216L, 139584L)]
    [InlineData("tiny-bert-lora", 7810L, 108354L)]
    public void TrainableParametersCountAsPeftCountsThem(string variant, long trainable, long baseCount)
    {
        using var loaded = LoadBase(ModelOf(variant));
        var set = new LoraAdapterSet(loaded.Model);
        Assert.Equal(new ParameterCount(0, baseCount), set.CountParameters());

        set.Load(AdapterTestFiles.PeftAdapterDir(variant), trainable: true);
        // All params = base + adapter; BERT's classifier is counted twice (the frozen original and the trained copy).
        Assert.Equal(trainable, set.TrainableParameters);
        Assert.Equal(baseCount + trainable, set.TotalParameters);
        Assert.Equal(100.0 * trainable / (baseCount + trainable), set.TrainablePercent, 12);
        Assert.Equal(trainable, set.TrainableNamedParameters().Sum(p => p.Parameter.numel()));
        Assert.Equal(trainable, set.Get("default").ParameterCount);
    }

    [Fact]
    public void AnAdapterLoadedForInferenceIsFrozenAndTheLineReadsLikePeft()
    {
        using var loaded = LoadBase("tiny-llama");
        var set = new LoraAdapterSet(loaded.Model);
        var info = set.Load(AdapterTestFiles.PeftAdapterDir("tiny-llama-lora"));
        Assert.False(info.IsTrainable);
        Assert.Equal(0, set.TrainableParameters);
        Assert.All(loaded.Model.parameters(), p => Assert.False(p.requires_grad));

        set.Delete("default");
        set.Load(AdapterTestFiles.PeftAdapterDir("tiny-llama-lora"), trainable: true);
        Assert.Equal("trainable params: 8,192 || all params: 147,776 || trainable%: 5.5435", set.CountParameters().ToString());
    }
}
