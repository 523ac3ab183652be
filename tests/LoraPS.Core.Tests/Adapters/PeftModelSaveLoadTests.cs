using System.Text.Json.Nodes;
using LoraPS.Adapters;
using LoraPS.Checkpoints;
using TorchSharp;
using Xunit;
using static LoraPS.Tests.Adapters.PeftModelTestFiles;
using static TorchSharp.torch;

namespace LoraPS.Tests.Adapters;

/// <summary>
/// Adapters saved by <see cref="LoraAdapterSet.Save"/> are PEFT's files: the exact key names, dtypes, shapes and
/// metadata of tests/fixtures/peft/ADAPTER_KEYS.txt, PEFT's config keys, PEFT's folder layout; and they load back to
/// the same model. New adapters reproduce PEFT's seeded initialisation.
/// </summary>
public class PeftModelSaveLoadTests
{
    [Theory]
    [InlineData("tiny-llama-lora")]
    [InlineData("tiny-llama-dora")]
    [InlineData("tiny-bert-lora")]
    [InlineData("tiny-bert-dora")]
    public void SavedFileHasPeftsKeysDtypesShapesAndMetadata(string variant)
    {
        using var folder = new TempFolder();
        using var loaded = LoadBase(ModelOf(variant));
        var set = new LoraAdapterSet(loaded.Model);
        set.Load(AdapterTestFiles.PeftAdapterDir(variant));
        Assert.Equal([folder.Path], set.Save(folder.Path));
        Assert.Equal([PeftAdapterConfig.FileName, LoraAdapterSet.WeightsFileName], folder.Entries());

        using var scope = NewDisposeScope();
        using var saved = SafetensorsFile.Open(folder.Sub(LoraAdapterSet.WeightsFileName));
        using var peft = SafetensorsFile.Open(Path.Combine(AdapterTestFiles.PeftAdapterDir(variant), LoraAdapterSet.WeightsFileName));
        var expected = AdapterKeys(variant).Select(k => $"{k.Key} {k.DType} [{string.Join(", ", k.Shape)}]").Order(StringComparer.Ordinal);
        var actual = saved.Entries.Select(e => $"{e.Name} {e.DType} [{string.Join(", ", e.Shape)}]").Order(StringComparer.Ordinal);
        Assert.Equal(expected, actual);
        Assert.Equal(new Dictionary<string, string> { ["format"] = "pt" }, saved.Metadata);
        foreach (var e in peft.Entries) TensorAssert.Equal(peft.ReadTensor(e.Name), saved.ReadTensor(e.Name), e.Name);
    }

    [Theory]
    [InlineData("tiny-llama-lora")]
    [InlineData("tiny-llama-rslora")]
    [InlineData("tiny-llama-dora")]
    [InlineData("tiny-bert-lora")]
    [InlineData("tiny-bert-dora")]
    public void SavedConfigHasPeftsKeysAndValues(string variant)
    {
        using var folder = new TempFolder();
        using var loaded = LoadBase(ModelOf(variant));
        var set = new LoraAdapterSet(loaded.Model, baseModelNameOrPath: "ignored/because/the/config/names/one");
        set.Load(AdapterTestFiles.PeftAdapterDir(variant));
        set.Save(folder.Path);

        var saved = (JsonObject)JsonNode.Parse(File.ReadAllText(folder.Sub(PeftAdapterConfig.FileName)))!;
        var peft = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(AdapterTestFiles.PeftAdapterDir(variant), PeftAdapterConfig.FileName)))!;
        Assert.Equal(PeftAdapterConfig.WrittenKeys, saved.Select(kv => kv.Key));
        Assert.Superset(peft.Select(kv => kv.Key).ToHashSet(), saved.Select(kv => kv.Key).ToHashSet());
        foreach (var key in new[] { "r", "lora_alpha", "lora_dropout", "bias", "use_dora", "use_rslora", "task_type", "fan_in_fan_out", "peft_type", "base_model_name_or_path", "init_lora_weights", "inference_mode" })
            Assert.True(JsonNode.DeepEquals(peft[key], saved[key]), $"{key}: PEFT {peft[key]?.ToJsonString()}, saved {saved[key]?.ToJsonString()}");
        Assert.Equal(peft["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()).Order(StringComparer.Ordinal),
            saved["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()));
        // Current PEFT writes the classifier heads a SEQ_CLS adapter trains into modules_to_save (0.10 left it null).
        var modules = saved["modules_to_save"]?.AsArray().Select(n => n!.GetValue<string>()).ToArray();
        Assert.Equal(variant.StartsWith("tiny-bert", StringComparison.Ordinal) ? ["classifier", "score"] : null, modules);
    }

    [Theory]
    [InlineData("tiny-llama-lora")]
    [InlineData("tiny-llama-rslora")]
    [InlineData("tiny-llama-dora")]
    [InlineData("tiny-bert-lora")]
    [InlineData("tiny-bert-rslora")]
    [InlineData("tiny-bert-dora")]
    public void SaveThenLoadGivesTheSameModel(string variant)
    {
        var model = ModelOf(variant);
        using var folder = new TempFolder();
        using var scope = NewDisposeScope();
        var r = Reference(model);
        Tensor logits;
        using (var first = LoadBase(model))
        {
            var set = new LoraAdapterSet(first.Model);
            set.Load(AdapterTestFiles.PeftAdapterDir(variant), trainable: true);
            set.Save(folder.Path);
            logits = Logits(first.Model, r);
        }
        using var second = LoadBase(model);
        var reloaded = new LoraAdapterSet(second.Model);
        reloaded.Load(folder.Path);
        TensorAssert.Equal(logits, Logits(second.Model, r), "logits after save and load");
    }

    /// <summary>
    /// The fixtures seeded torch with 2024 before get_peft_model: a new adapter added with seed 2024 draws the same
    /// lora_A in every layer (B = 0), DoRA starts m at ‖W‖ per row, and SEQ_CLS copies the classifier.
    /// </summary>
    [Theory]
    [InlineData("tiny-llama-lora")]
    [InlineData("tiny-llama-dora")]
    [InlineData("tiny-bert-lora")]
    [InlineData("tiny-bert-dora")]
    public void NewAdapterReproducesPeftsSeededInitialisation(string variant)
    {
        using var loaded = LoadBase(ModelOf(variant));
        var set = new LoraAdapterSet(loaded.Model);
        var config = PeftAdapterConfig.Read(AdapterTestFiles.PeftAdapterDir(variant));
        var info = set.Add("default", config, seed: 2024);
        Assert.True(info.IsActive);
        Assert.True(info.IsTrainable);

        using var scope = NewDisposeScope();
        var peft = ReadAll(Path.Combine(AdapterTestFiles.PeftAdapterDir(variant), LoraAdapterSet.WeightsFileName));
        var mine = PeftParameters(set, "default");
        Assert.Equal(peft.Keys.Order(StringComparer.Ordinal), mine.Keys.Order(StringComparer.Ordinal));
        foreach (var (key, value) in mine)
        {
            if (key.EndsWith(".lora_A.weight", StringComparison.Ordinal)) TensorAssert.Close(peft[key], value, 1e-7, key);
            else if (key.EndsWith(".lora_B.weight", StringComparison.Ordinal)) Assert.Equal(0, value.abs().max().item<float>());
            else if (key.EndsWith(".lora_magnitude_vector", StringComparison.Ordinal)) TensorAssert.Close(peft[key], value, 1e-6, key);
            else TensorAssert.Equal(peft[key], value, key); // the classifier copy starts as the base classifier
        }
        Assert.Equal(mine.Values.Sum(p => p.numel()), set.TrainableParameters);
    }

    [Fact]
    public void SeveralAdaptersUsePeftsFolderLayoutAndRefuseToOverwriteWithoutForce()
    {
        using var folder = new TempFolder();
        using var loaded = LoadBase("tiny-llama");
        var set = new LoraAdapterSet(loaded.Model, "models/tiny-llama");
        set.Add("default", new LoraConfig { Rank = 2, Dropout = 0, TargetModules = ModuleSelection.Names("q_proj") }, seed: 1);
        set.Add("other", new LoraConfig { Rank = 3, Dropout = 0, TargetModules = ModuleSelection.Names("o_proj", "down_proj") }, seed: 2);
        File.WriteAllText(folder.Sub("notes.txt"), "mine");

        Assert.Equal([folder.Path, folder.Sub("other")], set.Save(folder.Path));
        Assert.Equal([PeftAdapterConfig.FileName, LoraAdapterSet.WeightsFileName, "notes.txt", "other"], folder.Entries());
        Assert.Equal([PeftAdapterConfig.FileName, LoraAdapterSet.WeightsFileName], folder.Entries(folder.Sub("other")));
        var otherConfig = PeftAdapterConfig.Read(folder.Sub("other"));
        Assert.Equal(3, otherConfig.Rank);
        Assert.Equal(["down_proj", "o_proj"], otherConfig.TargetModules!.ModuleNames.Order(StringComparer.Ordinal));
        Assert.Equal("models/tiny-llama", otherConfig.BaseModelNameOrPath);

        var error = Assert.Throws<IOException>(() => set.Save(folder.Path, "other"));
        Assert.Contains("Force", error.Message);
        var before = File.ReadAllBytes(folder.Sub("other", LoraAdapterSet.WeightsFileName));
        RandomizeB(set, "other", 5);
        Assert.Equal([folder.Sub("other")], set.Save(folder.Path, "other", force: true));
        Assert.NotEqual(before, File.ReadAllBytes(folder.Sub("other", LoraAdapterSet.WeightsFileName)));
        Assert.Equal("mine", File.ReadAllText(folder.Sub("notes.txt")));
        Assert.DoesNotContain(folder.Entries(), e => e.Contains("lorapstmp", StringComparison.Ordinal));

        // Loading the subfolder under another name gives the same factors.
        using var second = LoadBase("tiny-llama");
        var reloaded = new LoraAdapterSet(second.Model);
        reloaded.Load(folder.Sub("other"), "again");
        foreach (var (path, layer) in set.LoraLayers.Where(l => l.Value.Adapters.Contains("other")))
            TensorAssert.Equal(layer.LoraB("other"), reloaded.LoraLayers[path].LoraB("again"), path);
    }
}
