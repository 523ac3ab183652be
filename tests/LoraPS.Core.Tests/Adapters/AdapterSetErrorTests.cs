using System.Text.Json.Nodes;
using LoraPS.Adapters;
using LoraPS.Checkpoints;
using LoraPS.Models;
using TorchSharp;
using Xunit;
using static LoraPS.Tests.Adapters.PeftModelTestFiles;
using static TorchSharp.torch;

namespace LoraPS.Tests.Adapters;

/// <summary>
/// Bad adapter folders and bad configs fail with messages that name the file, key and fix, and leave the model
/// untouched; saves that fail or are refused leave nothing half-written behind.
/// </summary>
public class AdapterSetErrorTests
{
    const string Q0 = "base_model.model.model.layers.0.self_attn.q_proj";

    /// <summary>A copy of a fixture adapter folder, optionally with its tensors rewritten.</summary>
    static string CopyAdapter(TempFolder folder, string variant = "tiny-llama-lora",
        Func<Dictionary<string, Tensor>, IEnumerable<KeyValuePair<string, Tensor>>>? edit = null)
    {
        var target = folder.Sub("adapter");
        Directory.CreateDirectory(target);
        foreach (var file in Directory.GetFiles(AdapterTestFiles.PeftAdapterDir(variant)))
            File.Copy(file, Path.Combine(target, Path.GetFileName(file)));
        if (edit is not null)
        {
            using var scope = NewDisposeScope();
            var weights = Path.Combine(target, LoraAdapterSet.WeightsFileName);
            var tensors = ReadAll(weights);
            SafetensorsWriter.Write(weights, edit(tensors).ToList());
        }
        return target;
    }

    static void EditConfig(string adapter, Action<JsonObject> edit)
    {
        var path = Path.Combine(adapter, PeftAdapterConfig.FileName);
        var json = (JsonObject)JsonNode.Parse(File.ReadAllText(path))!;
        edit(json);
        File.WriteAllText(path, json.ToJsonString());
    }

    /// <summary>Loads <paramref name="adapter"/> onto a fresh tiny model, expecting a failure that changes nothing.</summary>
    static T LoadFails<T>(string adapter, string model = "tiny-llama") where T : Exception
    {
        using var loaded = LoadBase(model);
        var set = new LoraAdapterSet(loaded.Model);
        var error = Assert.Throws<T>(() => set.Load(adapter));
        Assert.Empty(set.Names);
        Assert.DoesNotContain(loaded.Model.modules(), m => m is LoraLinear or ModulesToSaveWrapper);
        return error;
    }

    [Fact]
    public void MissingTensorIsNamed()
    {
        using var folder = new TempFolder();
        var adapter = CopyAdapter(folder, edit: t => t.Where(kv => kv.Key != Q0 + ".lora_B.weight"));
        var error = LoadFails<AdapterFileException>(adapter);
        Assert.Equal(Q0 + ".lora_B.weight", error.Key);
        Assert.EndsWith(LoraAdapterSet.WeightsFileName, error.FilePath);
        Assert.Contains("lacks 1 tensor", error.Message);
    }

    [Fact]
    public void UnexpectedTensorIsNamed()
    {
        using var folder = new TempFolder();
        var adapter = CopyAdapter(folder, edit: t => t.Append(new(Q0 + ".lora_C.weight", zeros(4, 64))));
        var error = LoadFails<AdapterFileException>(adapter);
        Assert.Equal(Q0 + ".lora_C.weight", error.Key);
        Assert.Contains("belong to no module", error.Message);
    }

    [Fact]
    public void WrongShapeSaysWhatTheLayerNeeds()
    {
        using var folder = new TempFolder();
        var adapter = CopyAdapter(folder, edit: t => t.Select(kv => kv.Key == Q0 + ".lora_A.weight" ? new(kv.Key, zeros(4, 32)) : kv));
        var error = LoadFails<AdapterFileException>(adapter);
        Assert.Equal(Q0 + ".lora_A.weight", error.Key);
        Assert.Contains("is [4, 32], but LoRA on 'model.layers.0.self_attn.q_proj' (64 -> 64) with r=4 needs lora_A as [r, in] = [4, 64]", error.Message);
    }

    [Fact]
    public void RankMismatchBetweenConfigAndWeightsIsExplained()
    {
        using var folder = new TempFolder();
        var adapter = CopyAdapter(folder);
        EditConfig(adapter, c => c["r"] = 8);
        var error = LoadFails<AdapterFileException>(adapter);
        Assert.Contains("rank 4 where adapter_config.json says r=8", error.Message);
    }

    [Fact]
    public void NonFloatTensorIsRefused()
    {
        using var folder = new TempFolder();
        var adapter = CopyAdapter(folder, edit: t => t.Select(kv => kv.Key == Q0 + ".lora_A.weight" ? new(kv.Key, kv.Value.to(ScalarType.Int32)) : kv));
        Assert.Contains("must be floating point", LoadFails<AdapterFileException>(adapter).Message);
    }

    [Fact]
    public void TruncatedFileIsReportedAsCorrupt()
    {
        using var folder = new TempFolder();
        var adapter = CopyAdapter(folder);
        var weights = Path.Combine(adapter, LoraAdapterSet.WeightsFileName);
        var bytes = File.ReadAllBytes(weights);
        File.WriteAllBytes(weights, bytes[..(bytes.Length / 2)]);
        var error = LoadFails<AdapterFileException>(adapter);
        Assert.Equal(weights, error.FilePath);
        Assert.Contains("truncated or corrupt", error.Message);
    }

    [Fact]
    public void PickleOnlyAdapterAsksForSafetensorsAndIsNeverRead()
    {
        using var folder = new TempFolder();
        var adapter = CopyAdapter(folder);
        File.Delete(Path.Combine(adapter, LoraAdapterSet.WeightsFileName));
        File.WriteAllBytes(Path.Combine(adapter, LoraAdapterSet.PickleWeightsFileName), [0x80, 0x02, 0x63]); // pickle protocol 2 header
        var error = LoadFails<AdapterFileException>(adapter);
        Assert.EndsWith(LoraAdapterSet.PickleWeightsFileName, error.FilePath);
        Assert.Contains("Convert it to safetensors", error.Message);
        Assert.Contains("never reads", error.Message);
    }

    [Fact]
    public void MissingFilesAndFoldersAreNamed()
    {
        using var folder = new TempFolder();
        Assert.Contains("does not exist", LoadFails<DirectoryNotFoundException>(folder.Sub("nowhere")).Message);
        var adapter = CopyAdapter(folder);
        File.Delete(Path.Combine(adapter, LoraAdapterSet.WeightsFileName));
        Assert.Contains("incomplete", LoadFails<AdapterFileException>(adapter).Message);
        File.Delete(Path.Combine(adapter, PeftAdapterConfig.FileName));
        Assert.Contains(PeftAdapterConfig.FileName, LoadFails<FileNotFoundException>(adapter).Message);
    }

    [Fact]
    public void BadConfigsNameTheConfigFile()
    {
        using var folder = new TempFolder();
        var adapter = CopyAdapter(folder);
        var config = Path.Combine(adapter, PeftAdapterConfig.FileName);

        File.WriteAllText(config, "{ \"r\": 4, ");
        Assert.Equal(config, LoadFails<AdapterFileException>(adapter).FilePath);

        File.WriteAllText(config, """{ "peft_type": "LORA", "r": 0, "target_modules": ["q_proj"] }""");
        Assert.Contains("at least 1", LoadFails<AdapterFileException>(adapter).Message);

        File.WriteAllText(config, """{ "peft_type": "PREFIX_TUNING" }""");
        Assert.Contains("only LoRA adapters", LoadFails<AdapterFileException>(adapter).Message);

        // A GPT-2 adapter on a Llama: its targets do not exist here.
        File.WriteAllText(config, """{ "peft_type": "LORA", "r": 4, "target_modules": ["c_attn"] }""");
        var error = LoadFails<AdapterFileException>(adapter);
        Assert.Contains("does not fit this llama model", error.Message);
        Assert.Contains("q_proj", error.Message); // it lists the layer names there are

        File.WriteAllText(config, """{ "peft_type": "LORA", "r": 100, "target_modules": ["q_proj"] }""");
        Assert.Contains("larger than min(in, out)", LoadFails<AdapterFileException>(adapter).Message);

        File.WriteAllText(config, """{ "peft_type": "LORA", "r": 4, "target_modules": ["q_proj"], "lora_bias": true }""");
        Assert.Contains("lora_bias", LoadFails<NotSupportedException>(adapter).Message);
    }

    [Fact]
    public void UnknownConfigKeysAreIgnoredAndMissingOnesDefaulted()
    {
        using var folder = new TempFolder();
        var adapter = CopyAdapter(folder);
        File.WriteAllText(Path.Combine(adapter, PeftAdapterConfig.FileName), """
            { "peft_type": "LORA", "r": 4, "lora_alpha": 8,
              "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
              "a_key_from_peft_1_0": { "nested": [1, 2] }, "use_dora": false }
            """);
        using var loaded = LoadBase("tiny-llama");
        var set = new LoraAdapterSet(loaded.Model);
        var info = set.Load(adapter);
        Assert.Equal(0.0, info.Config.Dropout);
        Assert.Equal(LoraBiasMode.None, info.Config.Bias);
        using var scope = NewDisposeScope();
        TensorAssert.Close(Outputs("tiny-llama-lora")["logits_adapter"], Logits(loaded.Model, Reference("tiny-llama")), 1e-5, "logits");
    }

    [Fact]
    public void ClassifierAdapterWithoutItsHeadIsRefused()
    {
        using var folder = new TempFolder();
        var adapter = CopyAdapter(folder, "tiny-bert-lora", t => t.Where(kv => !kv.Key.Contains("classifier", StringComparison.Ordinal)));
        var error = LoadFails<AdapterFileException>(adapter, "tiny-bert");
        Assert.Contains("base_model.model.classifier.bias", error.Message);
    }

    [Fact]
    public void AdapterOfAnotherArchitectureIsRefused()
    {
        var error = LoadFails<AdapterFileException>(AdapterTestFiles.PeftAdapterDir("tiny-llama-lora"), "tiny-bert");
        Assert.Contains("does not fit this bert model", error.Message);
    }

    [Fact]
    public void BadNewAdaptersAreRefusedWithoutChangingTheModel()
    {
        using var loaded = LoadBase("tiny-llama");
        var set = new LoraAdapterSet(loaded.Model);
        var ok = new LoraConfig { Rank = 4, Dropout = 0, TargetModules = ModuleSelection.Names("q_proj") };

        var nothing = Assert.Throws<ArgumentException>(() => set.Add("x", ok with { TargetModules = ModuleSelection.Names("query") }));
        Assert.Contains("matched none", nothing.Message);
        Assert.Contains("larger than min(in, out)", Assert.Throws<ArgumentException>(() => set.Add("x", ok with { Rank = 65 })).Message);
        Assert.Contains("matched no module", Assert.Throws<ArgumentException>(() => set.Add("x", ok with { ModulesToSave = ["clasifier"] })).Message);
        Assert.Throws<NotSupportedException>(() => set.Add("x", ok with { LoraBias = true }));
        Assert.Throws<NotSupportedException>(() => set.Add("x", ok with { Init = LoraInit.Parse("eva") }));
        Assert.Throws<ArgumentException>(() => set.Add("a.b", ok));
        Assert.Throws<ArgumentException>(() => set.Add("", ok));
        Assert.Empty(set.Names);
        Assert.DoesNotContain(loaded.Model.modules(), m => m is LoraLinear or ModulesToSaveWrapper);

        set.Add("x", ok);
        Assert.Throws<ArgumentException>(() => set.Add("x", ok));
        Assert.Throws<ArgumentException>(() => set.Load(AdapterTestFiles.PeftAdapterDir("tiny-llama-lora"), "x"));
        set.MergeInPlace();
        Assert.Throws<InvalidOperationException>(() => set.Load(AdapterTestFiles.PeftAdapterDir("tiny-llama-lora"), "y"));
        Assert.Throws<InvalidOperationException>(() => new LoraAdapterSet(loaded.Model));
    }

    [Fact]
    public void TiedWeightsCannotGetLoraOrACopy()
    {
        // stories260K ties lm_head to the token embedding.
        using var loaded = ModelLoader.Load(Models.ModelTestFiles.Stories260K);
        var set = new LoraAdapterSet(loaded.Model);
        var config = new LoraConfig { Rank = 4, Dropout = 0, TargetModules = ModuleSelection.Names("q_proj", "lm_head") };
        Assert.Contains("tie_word_embeddings", Assert.Throws<NotSupportedException>(() => set.Add("x", config)).Message);
        Assert.Contains("tied", Assert.Throws<NotSupportedException>(() => set.Add("x", config with { TargetModules = ModuleSelection.Names("q_proj"), ModulesToSave = ["lm_head"] })).Message);
        Assert.Empty(set.Names);
    }

    [Fact]
    public void FailedAdapterSaveLeavesNothingBehind()
    {
        using var folder = new TempFolder();
        using var loaded = LoadBase("tiny-llama");
        var set = new LoraAdapterSet(loaded.Model);
        set.Load(AdapterTestFiles.PeftAdapterDir("tiny-llama-lora"));
        set.BeforeCommit = _ => throw new IOException("disk full");

        Assert.Throws<IOException>(() => set.Save(folder.Sub("new")));
        Assert.Empty(folder.Entries());

        // An existing adapter overwritten with Force keeps its old files when the save fails.
        set.BeforeCommit = null;
        set.Save(folder.Sub("old"));
        var before = folder.Entries(folder.Sub("old")).Select(f => File.ReadAllBytes(folder.Sub("old", f))).ToList();
        set.BeforeCommit = _ => throw new IOException("disk full");
        Assert.Throws<IOException>(() => set.Save(folder.Sub("old"), force: true));
        Assert.Equal([PeftAdapterConfig.FileName, LoraAdapterSet.WeightsFileName], folder.Entries(folder.Sub("old")));
        Assert.Equal(before, folder.Entries(folder.Sub("old")).Select(f => File.ReadAllBytes(folder.Sub("old", f))).ToList());
        Assert.Equal(["old"], folder.Entries());
    }

    [Fact]
    public void MergeAndSaveRefusesANonEmptyFolderWithoutForceAndLeavesNothingAfterAFailure()
    {
        using var folder = new TempFolder();
        using var loaded = LoadBase("tiny-llama");
        var set = new LoraAdapterSet(loaded.Model);
        Assert.Throws<InvalidOperationException>(() => set.MergeAndSave(folder.Sub("merged"))); // nothing to merge
        set.Load(AdapterTestFiles.PeftAdapterDir("tiny-llama-lora"));

        Directory.CreateDirectory(folder.Sub("merged"));
        File.WriteAllText(folder.Sub("merged", "keep.txt"), "mine");
        var refused = Assert.Throws<IOException>(() => set.MergeAndSave(folder.Sub("merged")));
        Assert.Contains("not empty", refused.Message);
        Assert.Equal(["keep.txt"], folder.Entries(folder.Sub("merged")));

        // A failure just before the move: the old content stays, no temporary folder is left.
        set.BeforeCommit = _ => throw new IOException("disk full");
        Assert.Throws<IOException>(() => set.MergeAndSave(folder.Sub("merged"), force: true));
        Assert.Throws<IOException>(() => set.MergeAndSave(folder.Sub("fresh")));
        Assert.Equal(["merged"], folder.Entries());
        Assert.Equal(["keep.txt"], folder.Entries(folder.Sub("merged")));

        set.BeforeCommit = null;
        set.MergeAndSave(folder.Sub("merged"), force: true);
        Assert.Equal(["config.json", "generation_config.json", "model.safetensors"], folder.Entries(folder.Sub("merged")));
        Assert.Equal(["merged"], folder.Entries());

        // Disabled adapters have nothing to merge; the base folder itself is never overwritten.
        set.Disable();
        Assert.Throws<InvalidOperationException>(() => set.MergeAndSave(folder.Sub("other")));
        set.Enable();
        Assert.Throws<IOException>(() => set.MergeAndSave(AdapterTestFiles.Fixture("models", "tiny-llama"), force: true));
    }

    [Fact]
    public void MergeAndSaveFailingMidwayLeavesNoTrace()
    {
        // The base model's config.json disappears after loading: the weights are written, then copying the config fails.
        using var folder = new TempFolder();
        var copy = folder.Sub("base");
        Directory.CreateDirectory(copy);
        foreach (var file in Directory.GetFiles(AdapterTestFiles.Fixture("models", "tiny-llama")))
            File.Copy(file, Path.Combine(copy, Path.GetFileName(file)));
        using var loaded = ModelLoader.Load(copy);
        var set = new LoraAdapterSet(loaded.Model);
        set.Load(AdapterTestFiles.PeftAdapterDir("tiny-llama-lora"));
        File.Delete(Path.Combine(copy, "config.json"));

        Assert.Throws<FileNotFoundException>(() => set.MergeAndSave(folder.Sub("merged")));
        Assert.Equal(["base"], folder.Entries());
    }
}
