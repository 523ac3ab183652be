using LoraPS.Adapters;
using LoraPS.Checkpoints;
using LoraPS.Models;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LoraPS.Tests.Adapters;

/// <summary>The tiny fixture models with PEFT adapters on them, and helpers shared by the model-level adapter tests.</summary>
internal static class PeftModelTestFiles
{
    public static string ModelOf(string variant) => variant.StartsWith("tiny-llama", StringComparison.Ordinal) ? "tiny-llama" : "tiny-bert";

    /// <summary>
    /// A fixture base model with eager attention, as the fixtures were generated (torch 1.13 has no SDPA), so the
    /// comparisons measure the adapter code and not kernel rounding.
    /// </summary>
    public static LoadedModel LoadBase(string model) =>
        ModelLoader.Load(AdapterTestFiles.Fixture("models", model), new ModelLoadOptions { Attention = AttentionImplementation.Eager });

    /// <summary>Every tensor of a safetensors file, in the caller's dispose scope.</summary>
    public static Dictionary<string, Tensor> ReadAll(string path)
    {
        using var file = SafetensorsFile.Open(path);
        return file.Entries.ToDictionary(e => e.Name, e => file.ReadTensor(e.Name));
    }

    public static Dictionary<string, Tensor> Reference(string model) => ReadAll(AdapterTestFiles.Fixture("models", model, "reference.safetensors"));

    public static Dictionary<string, Tensor> Outputs(string variant) => ReadAll(AdapterTestFiles.Fixture("peft", variant, "outputs.safetensors"));

    /// <summary>Logits for the fixture batch (input_ids + attention_mask of reference.safetensors).</summary>
    public static Tensor Logits(TransformerModel model, Dictionary<string, Tensor> reference, string prefix = "")
    {
        using var noGrad = no_grad();
        var output = model.Forward(reference[prefix + "input_ids"], reference[prefix + "attention_mask"]);
        var logits = output.Logits!;
        output.DisposeAllBut(logits);
        return logits;
    }

    public static double Loss(TransformerModel model, Dictionary<string, Tensor> reference, string prefix = "")
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var output = model.Forward(reference[prefix + "input_ids"], reference[prefix + "attention_mask"]);
        return model.ComputeLoss(output, reference[prefix + "labels"]).item<float>();
    }

    /// <summary>Every file key of the adapter's live tensors: LoRA factors, magnitudes and module copies.</summary>
    public static Dictionary<string, TorchSharp.Modules.Parameter> PeftParameters(LoraAdapterSet set, string adapter)
    {
        var result = new Dictionary<string, TorchSharp.Modules.Parameter>(StringComparer.Ordinal);
        foreach (var (path, layer) in set.LoraLayers)
        {
            if (!layer.Adapters.Contains(adapter)) continue;
            foreach (var (key, tensor) in layer.PeftTensors(path, adapter)) result[key] = (TorchSharp.Modules.Parameter)tensor;
        }
        foreach (var (path, wrapper) in set.SavedModuleWrappers)
        {
            if (!wrapper.Adapters.Contains(adapter)) continue;
            foreach (var (name, p) in wrapper.CopyParameters(adapter)) result[PeftStateDictKeys.Prefix + path + "." + name] = p;
        }
        return result;
    }

    /// <summary>The (key, dtype, shape) lines of tests/fixtures/peft/ADAPTER_KEYS.txt for one variant.</summary>
    public static List<(string Key, string DType, long[] Shape)> AdapterKeys(string variant)
    {
        var lines = File.ReadAllLines(AdapterTestFiles.Fixture("peft", "ADAPTER_KEYS.txt"));
        var result = new List<(string, string, long[])>();
        bool inSection = false;
        foreach (var line in lines)
        {
            if (line.StartsWith("## ", StringComparison.Ordinal)) { inSection = line.Split(' ')[1] == variant; continue; }
            if (!inSection || line.Trim().Length == 0) continue;
            var parts = line.Split(' ', 3);
            var shape = parts[2].Trim('[', ']').Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(long.Parse).ToArray();
            result.Add((parts[0], parts[1], shape));
        }
        Assert.NotEmpty(result);
        return result;
    }

    /// <summary>Sets every lora_B of <paramref name="adapter"/> to N(0, 0.05²) so the adapter changes the outputs.</summary>
    public static void RandomizeB(LoraAdapterSet set, string adapter, int seed)
    {
        using var noGrad = no_grad();
        var generator = new Generator((ulong)seed);
        foreach (var layer in set.LoraLayers.Values.Where(l => l.Adapters.Contains(adapter)))
        {
            var b = layer.LoraB(adapter);
            b.copy_(randn(b.shape, generator: generator) * 0.05);
        }
    }
}

/// <summary>A fresh folder under the temp directory, deleted with everything in it on dispose.</summary>
internal sealed class TempFolder : IDisposable
{
    public TempFolder()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "loraps-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string Sub(params string[] parts) => System.IO.Path.Combine([Path, .. parts]);

    /// <summary>Names of every entry directly in <paramref name="folder"/> (default: the root).</summary>
    public IReadOnlyList<string> Entries(string? folder = null) =>
        Directory.EnumerateFileSystemEntries(folder ?? Path).Select(System.IO.Path.GetFileName).Order(StringComparer.Ordinal).ToList()!;

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}
