using LoraPS.Adapters;
using LoraPS.Checkpoints;
using LoraPS.Models;
using TorchSharp;
using Xunit;
using static LoraPS.Tests.Adapters.PeftModelTestFiles;
using static TorchSharp.torch;

namespace LoraPS.Tests.Adapters;

/// <summary>
/// modules_to_save (trained copies, saved under the plain module path) and PEFT's bias modes, end to end: what is
/// trainable, which keys are saved, and that save → load and merged checkpoints reproduce the model. Also the
/// <see cref="LoraModel"/> handle with its tokenizer.
/// </summary>
public class AdapterSetModulesAndBiasTests
{
    static void Perturb(IEnumerable<TorchSharp.Modules.Parameter> parameters, int seed)
    {
        using var noGrad = no_grad();
        var generator = new Generator((ulong)seed);
        foreach (var p in parameters) p.add_(randn(p.shape, generator: generator) * 0.1);
    }

    [Fact]
    public void RobertaClassifierHeadIsCopiedPerLayerTrainedAndSavedUnderItsPlainPath()
    {
        using var folder = new TempFolder();
        using var loaded = LoadBase("tiny-roberta");
        var set = new LoraAdapterSet(loaded.Model);
        var info = set.Add("default", new LoraConfig { Rank = 4, Dropout = 0, TargetModules = ModuleSelection.Names("query", "value", "dense") }, seed: 3);
        // The task type follows the head, so the classifier (dense + out_proj) is trained whole and gets no LoRA.
        Assert.Equal(PeftTaskType.SequenceClassification, info.Config.TaskType);
        Assert.Equal(["classifier", "score"], info.Config.ModulesToSave);
        Assert.Equal(["classifier.dense", "classifier.out_proj"], info.SavedModules);
        Assert.DoesNotContain(info.Targets, t => t.Path.StartsWith("classifier", StringComparison.Ordinal));
        Assert.Contains(info.Targets, t => t.Path == "roberta.encoder.layer.0.output.dense");
        var copyParameters = info.SavedModules.SelectMany(p => set.SavedModuleWrappers[p].CopyParameters("default")).Select(p => p.Parameter).ToList();
        Assert.All(copyParameters, p => Assert.True(p.requires_grad));
        Assert.Equal(64 * 64 + 64 + 64 * 2 + 2, copyParameters.Sum(p => p.numel()));

        using var scope = NewDisposeScope();
        var r = Reference("tiny-roberta");
        RandomizeB(set, "default", 4);
        Perturb(copyParameters, 5);
        var logits = Logits(loaded.Model, r);
        using (set.DisabledScope()) TensorAssert.Close(r["logits"], Logits(loaded.Model, r), 1e-5, "disabled = base");

        set.Save(folder.Sub("adapter"));
        using (var file = SafetensorsFile.Open(folder.Sub("adapter", LoraAdapterSet.WeightsFileName)))
        {
            var names = file.Entries.Select(e => e.Name).Where(n => n.Contains("classifier", StringComparison.Ordinal)).Order(StringComparer.Ordinal);
            Assert.Equal(["base_model.model.classifier.dense.bias", "base_model.model.classifier.dense.weight",
                          "base_model.model.classifier.out_proj.bias", "base_model.model.classifier.out_proj.weight"], names);
        }
        using (var second = LoadBase("tiny-roberta"))
        {
            new LoraAdapterSet(second.Model).Load(folder.Sub("adapter"));
            TensorAssert.Equal(logits, Logits(second.Model, r), "reloaded logits");
        }

        var merged = set.MergeAndSave(folder.Sub("merged"));
        using (var file = SafetensorsFile.Open(Path.Combine(merged, "model.safetensors")))
            TensorAssert.Equal(set.SavedModuleWrappers["classifier.out_proj"].CopyParameters("default").First(p => p.Name == "weight").Parameter, file.ReadTensor("classifier.out_proj.weight"));
        using var reloaded = ModelLoader.Load(merged, new ModelLoadOptions { Attention = AttentionImplementation.Eager });
        TensorAssert.Close(logits, Logits(reloaded.Model, r), 1e-5, "merged checkpoint logits");
    }

    [Theory]
    [InlineData(LoraBiasMode.All)]
    [InlineData(LoraBiasMode.LoraOnly)]
    public void BiasModesTrainAndSaveThePeftSelection(LoraBiasMode mode)
    {
        using var folder = new TempFolder();
        using var loaded = LoadBase("tiny-bert");
        var set = new LoraAdapterSet(loaded.Model);
        var info = set.Add("default", new LoraConfig { Rank = 2, Dropout = 0, Bias = mode, TargetModules = ModuleSelection.Names("query", "value") }, seed: 1);

        var trainableBiases = set.TrainableNamedParameters().Where(p => p.Name.EndsWith("bias", StringComparison.Ordinal) && !p.Name.Contains("modules_to_save", StringComparison.Ordinal)).ToList();
        var expected = mode == LoraBiasMode.All
            ? loaded.Model.named_parameters().Count(p => p.name.Contains("bias", StringComparison.Ordinal) && !p.name.Contains("classifier", StringComparison.Ordinal))
            : 4; // query and value in 2 layers
        Assert.Equal(expected, trainableBiases.Count);

        set.Save(folder.Path);
        using var scope = NewDisposeScope();
        var saved = ReadAll(folder.Sub(LoraAdapterSet.WeightsFileName));
        var biasKeys = saved.Keys.Where(k => k.EndsWith("bias", StringComparison.Ordinal) && !k.Contains("classifier", StringComparison.Ordinal)).ToList();
        Assert.Equal(expected, biasKeys.Count);
        Assert.Contains("base_model.model.bert.encoder.layer.0.attention.self.query.base_layer.bias", biasKeys);
        Assert.Equal(mode == LoraBiasMode.All, biasKeys.Contains("base_model.model.bert.embeddings.LayerNorm.bias"));
        Assert.Equal(mode == LoraBiasMode.All, biasKeys.Contains("base_model.model.bert.encoder.layer.0.attention.self.key.bias"));

        // A trained bias travels with the adapter and is copied into the base model on load (as PEFT does).
        Perturb(trainableBiases.Select(p => p.Parameter), 9);
        RandomizeB(set, "default", 2);
        set.Save(folder.Path, force: true);
        var r = Reference("tiny-bert");
        var logits = Logits(loaded.Model, r);
        using var second = LoadBase("tiny-bert");
        var reloaded = new LoraAdapterSet(second.Model);
        reloaded.Load(folder.Path, trainable: true);
        Assert.Equal(set.TrainableParameters, reloaded.TrainableParameters);
        TensorAssert.Equal(logits, Logits(second.Model, r), "reloaded logits");
        Assert.Equal(info.Config with { BaseModelNameOrPath = null }, reloaded.Get("default").Config with { BaseModelNameOrPath = null });
    }

    [Fact]
    public void LoraModelHandleCountsParametersAndMergesWithItsTokenizer()
    {
        using var folder = new TempFolder();
        using var model = LoraModel.Load(Models.ModelTestFiles.Stories260K);
        Assert.Equal(model.Parameters, model.TotalParameters);
        Assert.Equal(0, model.TrainableParameters);

        // Defaults: q_proj and v_proj (PEFT's llama default), r = 8. q: 64→64, v: 64→32, 5 layers.
        var info = model.Adapters.Add("default", new LoraConfig(), seed: 42);
        const long lora = 5 * (8 * 64 + 64 * 8 + 8 * 64 + 32 * 8);
        Assert.Equal(lora, info.ParameterCount);
        Assert.Equal(lora, model.TrainableParameters);
        Assert.Equal(model.Parameters + lora, model.TotalParameters);
        Assert.Equal(100.0 * lora / (model.Parameters + lora), model.TrainablePercent, 12);
        Assert.Contains("trainable params: 8,960 ||", model.ToString());
        Assert.Equal(model.Path, model.Adapters.BaseModelNameOrPath);

        RandomizeB(model.Adapters, "default", 1);
        using var scope = NewDisposeScope();
        var ids = tensor(model.Tokenizer.Encode("Once upon a time").Select(i => (long)i).ToArray()).unsqueeze(0);
        using var noGrad = no_grad();
        var logits = model.Network.forward(ids);

        var merged = model.Adapters.MergeAndSave(folder.Sub("merged"));
        Assert.Equal(["config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json"],
            folder.Entries(merged));
        using (var file = SafetensorsFile.Open(Path.Combine(merged, "model.safetensors")))
            Assert.DoesNotContain(file.Entries, e => e.Name == "lm_head.weight"); // tied: stored once, as the embedding
        using var reloaded = LoraModel.Load(merged);
        Assert.Equal(model.Parameters, reloaded.Parameters);
        // A real model with logits of size ~10: float32 rounding of W + ΔW vs W·x + ΔW·x is relative.
        Models.ModelTestFiles.AssertClose(logits, reloaded.Network.forward(ids), 1e-5, 1e-5, "merged model logits");
    }
}
