using LoraPS.Adapters;
using LoraPS.Checkpoints;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace LoraPS.Tests.Adapters;

/// <summary>
/// The layers of tests/fixtures/models/tiny-llama and tiny-bert wrapped in <see cref="LoraLinear"/> with the PEFT
/// 0.10 adapters of tests/fixtures/peft loaded: delta weights, DoRA norms and merged weights must match what PEFT
/// computed (outputs.safetensors, merged/model.safetensors) within 1e-5.
/// </summary>
public class PeftFixtureParityTests
{
    /// <summary>HF module paths of the linear layers in <c>named_modules()</c> order (the order PEFT wraps them).</summary>
    static IEnumerable<string> LinearPaths(string model) => model switch
    {
        "tiny-llama" =>
        [
            .. Enumerable.Range(0, 2).SelectMany(i => new[]
            {
                $"model.layers.{i}.self_attn.q_proj", $"model.layers.{i}.self_attn.k_proj", $"model.layers.{i}.self_attn.v_proj",
                $"model.layers.{i}.self_attn.o_proj", $"model.layers.{i}.mlp.gate_proj", $"model.layers.{i}.mlp.up_proj",
                $"model.layers.{i}.mlp.down_proj",
            }),
            "lm_head",
        ],
        _ =>
        [
            .. Enumerable.Range(0, 2).SelectMany(i => new[]
            {
                $"bert.encoder.layer.{i}.attention.self.query", $"bert.encoder.layer.{i}.attention.self.key",
                $"bert.encoder.layer.{i}.attention.self.value", $"bert.encoder.layer.{i}.attention.output.dense",
                $"bert.encoder.layer.{i}.intermediate.dense", $"bert.encoder.layer.{i}.output.dense",
            }),
            "bert.pooler.dense", "classifier",
        ],
    };

    static string ModelOf(string variant) => variant.StartsWith("tiny-llama", StringComparison.Ordinal) ? "tiny-llama" : "tiny-bert";

    /// <summary>
    /// Wraps every layer the fixture's adapter_config.json selects, in PEFT's order, drawing the init from
    /// <c>Generator(2024)</c> (the fixtures seeded torch with 2024 before get_peft_model), then optionally loads the
    /// adapter file's weights.
    /// </summary>
    sealed class AdaptedModel : IDisposable
    {
        public readonly Dictionary<string, LoraLinear> Layers = new(StringComparer.Ordinal);
        public readonly Dictionary<string, Tensor> InitialA = new(StringComparer.Ordinal);
        public readonly Dictionary<string, Tensor> BaseWeights = new(StringComparer.Ordinal);
        public LoraResolution Resolution = null!;

        public static AdaptedModel Load(string variant, bool loadAdapterWeights = true)
        {
            var model = new AdaptedModel();
            var modelName = ModelOf(variant);
            var adapterDir = AdapterTestFiles.PeftAdapterDir(variant);
            var config = PeftAdapterConfig.Read(adapterDir);

            using var baseFile = SafetensorsFile.Open(AdapterTestFiles.Fixture("models", modelName, "model.safetensors"));
            var layers = LinearPaths(modelName).Select(path =>
            {
                var shape = baseFile.GetEntry(path + ".weight").Shape;
                return (path, shape[1], shape[0]);
            }).ToList();
            model.Resolution = config.Resolve(layers, outputHeadPath: modelName == "tiny-llama" ? "lm_head" : "classifier");

            var generator = new Generator(2024);
            foreach (var target in model.Resolution.Targets)
            {
                var weight = baseFile.ReadTensor(target.Path + ".weight");
                model.BaseWeights[target.Path] = weight.clone().DetachFromDisposeScope();
                var bias = baseFile.TryGetEntry(target.Path + ".bias", out _) ? new TorchSharp.Modules.Parameter(baseFile.ReadTensor(target.Path + ".bias")) : null;
                var layer = new LoraLinear(Linear(new TorchSharp.Modules.Parameter(weight), bias));
                layer.AddAdapter(PeftStateDictKeys.DefaultAdapterName, target.Options, generator);
                model.InitialA[target.Path] = layer.LoraA("default").detach().clone().DetachFromDisposeScope();
                model.Layers[target.Path] = layer;
            }

            if (loadAdapterWeights)
            {
                using var adapterFile = SafetensorsFile.Open(Path.Combine(adapterDir, "adapter_model.safetensors"));
                var tensors = adapterFile.Entries.ToDictionary(e => e.Name, e => adapterFile.ReadTensor(e.Name));
                foreach (var (path, layer) in model.Layers) layer.LoadPeftTensors(path, "default", tensors);
                foreach (var t in tensors.Values) t.Dispose();
            }
            return model;
        }

        public void Dispose()
        {
            foreach (var layer in Layers.Values) layer.Dispose();
            foreach (var t in InitialA.Values.Concat(BaseWeights.Values)) t.Dispose();
        }
    }

    public static TheoryData<string, int> PlainVariants() => new()
    {
        { "tiny-llama-lora", 14 }, { "tiny-llama-rslora", 14 }, { "tiny-bert-lora", 13 }, { "tiny-bert-rslora", 13 },
    };

    public static TheoryData<string> DoraVariants() => new(["tiny-llama-dora", "tiny-bert-dora"]);

    public static TheoryData<string> AllVariants() =>
        new(["tiny-llama-lora", "tiny-llama-rslora", "tiny-llama-dora", "tiny-bert-lora", "tiny-bert-rslora", "tiny-bert-dora"]);

    [Theory]
    [MemberData(nameof(PlainVariants))]
    public void DeltaAndMergedWeightsMatchPeft(string variant, int wrappedLayers)
    {
        using var scope = NewDisposeScope();
        using var model = AdaptedModel.Load(variant);
        Assert.Equal(wrappedLayers, model.Layers.Count);
        Assert.Equal(variant.EndsWith("rslora", StringComparison.Ordinal) ? 4.0 : 2.0, model.Resolution.Targets[0].Scaling);

        using var outputs = SafetensorsFile.Open(AdapterTestFiles.Fixture("peft", variant, "outputs.safetensors"));
        using var merged = SafetensorsFile.Open(AdapterTestFiles.Fixture("peft", variant, "merged", "model.safetensors"));
        foreach (var (path, layer) in model.Layers)
        {
            TensorAssert.Close(outputs.ReadTensor("delta_weight." + path), layer.DeltaWeight("default"), 1e-5, $"ΔW {path}");
            layer.Merge();
            TensorAssert.Close(merged.ReadTensor(path + ".weight"), layer.BaseLayer.weight!, 1e-5, $"merged {path}");
            layer.Unmerge();
            TensorAssert.Close(model.BaseWeights[path], layer.BaseLayer.weight!, 1e-6, $"unmerged {path}");
        }
    }

    [Theory]
    [MemberData(nameof(DoraVariants))]
    public void DoraNormsAndMergedWeightsMatchPeft(string variant)
    {
        using var scope = NewDisposeScope();
        using var model = AdaptedModel.Load(variant);
        using var outputs = SafetensorsFile.Open(AdapterTestFiles.Fixture("peft", variant, "outputs.safetensors"));
        using var merged = SafetensorsFile.Open(AdapterTestFiles.Fixture("peft", variant, "merged", "model.safetensors"));
        foreach (var (path, layer) in model.Layers)
        {
            TensorAssert.Close(outputs.ReadTensor("dora_weight_norm." + path), layer.DoraWeightNorm("default"), 1e-5, $"norm {path}");
            layer.Merge();
            TensorAssert.Close(outputs.ReadTensor("merged_weight." + path), layer.BaseLayer.weight!, 1e-5, $"merged {path}");
            TensorAssert.Close(merged.ReadTensor(path + ".weight"), layer.BaseLayer.weight!, 1e-5, $"merged file {path}");
            layer.Unmerge();
            TensorAssert.Close(model.BaseWeights[path], layer.BaseLayer.weight!, 1e-5, $"unmerged {path}");
        }
    }

    /// <summary>
    /// PEFT drew lora_A from torch's generator seeded with 2024, layer by layer: A's and B's nn.Linear defaults, then
    /// kaiming_uniform_(A). Drawing in the same order from Generator(2024) gives the same A. For DoRA, m starts as
    /// ‖W‖ per row (B = 0 at init), which the fixture kept.
    /// </summary>
    [Theory]
    [MemberData(nameof(AllVariants))]
    public void InitialisationReproducesPeftsDraws(string variant)
    {
        using var scope = NewDisposeScope();
        using var model = AdaptedModel.Load(variant, loadAdapterWeights: false);
        using var adapterFile = SafetensorsFile.Open(Path.Combine(AdapterTestFiles.PeftAdapterDir(variant), "adapter_model.safetensors"));
        foreach (var (path, layer) in model.Layers)
        {
            TensorAssert.Close(adapterFile.ReadTensor(PeftStateDictKeys.ToPeft(path, "lora_A.default.weight")), model.InitialA[path], 1e-7, $"A {path}");
            if (layer.Magnitude("default") is { } m)
                TensorAssert.Close(adapterFile.ReadTensor(PeftStateDictKeys.ToPeft(path, "lora_magnitude_vector.default.weight")), m, 1e-6, $"m {path}");
        }
    }
}
