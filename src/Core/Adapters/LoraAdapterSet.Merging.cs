using System.Text.Json;
using System.Text.Json.Nodes;
using LoraPS.Checkpoints;
using LoraPS.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Adapters;

/// <summary>Merging adapters into the base weights: in memory, and as a standard Hugging Face checkpoint.</summary>
public sealed partial class LoraAdapterSet
{
    /// <summary>transformers' default <c>max_shard_size</c> ("5GB", decimal).</summary>
    const long MaxShardBytes = 5_000_000_000;

    /// <summary>
    /// The files <c>save_pretrained</c> of a model and its tokenizer write besides the weights and config.json; those
    /// present in the base model's folder are copied into a merged checkpoint.
    /// </summary>
    static readonly string[] CompanionFiles =
    [
        "generation_config.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
        "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "chat_template.jinja",
    ];

    /// <summary>
    /// Folds the active adapters into the base weights for fast inference (PEFT <c>merge_adapter</c>): the forward is
    /// then the plain base layers, with the same outputs up to float rounding. Merging twice equals merging once.
    /// Undo with <see cref="Unmerge"/>.
    /// </summary>
    /// <param name="safeMerge">Check every merged weight for NaN/Inf first; on failure nothing stays merged.</param>
    /// <returns>The adapters merged.</returns>
    public IReadOnlyList<string> MergeInPlace(bool safeMerge = false)
    {
        ThrowIfNothingToMerge();
        if (_layers.Values.FirstOrDefault(l => l.IsBaseQuantized && l.ActiveAdapters.Count > 0) is { } quantized)
            throw new InvalidOperationException($"The base weights are quantized ({quantized.QuantizedBaseLayer}); merging in place would re-quantize W + ΔW and lose the adapters' precision. Write a merged full-precision checkpoint instead (MergeAndSave / Merge-LoraAdapter -Path), which dequantizes first.");
        var merged = new List<LoraLinear>();
        try
        {
            foreach (var layer in _layers.Values)
            {
                if (layer.Merge(safeMerge: safeMerge).Count > 0) merged.Add(layer);
            }
        }
        catch
        {
            // Only this call merged anything: SetActive/Add/Delete refuse while merged, so nothing was merged before.
            foreach (var layer in merged) layer.Unmerge();
            throw;
        }
        return merged.Count == 0 ? [] : _active.ToList();
    }

    /// <summary>Undoes <see cref="MergeInPlace"/>: W −= s·B·A (DoRA: divides by the cached scale first).</summary>
    public void Unmerge()
    {
        foreach (var layer in _layers.Values) layer.Unmerge();
    }

    /// <summary>
    /// Writes the base model with the active adapters merged as a standard Hugging Face checkpoint (PEFT
    /// <c>merge_and_unload</c> + <c>save_pretrained</c>): <c>model.safetensors</c> (sharded above 5 GB) with the
    /// original key names — GPT-2's Conv1D weights transposed back to (in, out), tied weights stored once, the trained
    /// modules_to_save copies under their plain names — plus <c>config.json</c> and the tokenizer and generation files
    /// of the base model's folder. LoraPS and transformers load it as an ordinary model.
    /// A quantized (QLoRA) base is dequantized first: its weights are written unquantized in the compute dtype with the
    /// adapters folded in, never re-quantized (<see cref="IsBaseQuantized"/> tells callers to say so).
    /// </summary>
    /// <remarks>
    /// The model in memory keeps its adapters unmerged: merged copies of the targeted weights are computed on the
    /// side (extra memory the size of those weights). Everything is written into a temporary folder that is renamed
    /// into place at the end; a failure leaves no trace.
    /// </remarks>
    /// <param name="outputDirectory">The checkpoint folder.</param>
    /// <param name="force">Replace a folder that is not empty.</param>
    /// <returns>The full path of the folder written.</returns>
    /// <exception cref="IOException">The folder is not empty and <paramref name="force"/> is false.</exception>
    /// <exception cref="InvalidOperationException">No adapter is active, adapters are disabled, or the base model's config.json is unknown.</exception>
    public string MergeAndSave(string outputDirectory, bool force = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(outputDirectory);
        ThrowIfNothingToMerge();
        var target = Path.TrimEndingDirectorySeparator(Path.GetFullPath(outputDirectory));
        var configPath = Model.Config.SourcePath
            ?? throw new InvalidOperationException("The model's config.json is unknown (it was built in memory); a merged checkpoint needs it. Load the model from its folder.");
        var sourceFolder = Path.GetDirectoryName(Path.GetFullPath(configPath))!;
        if (string.Equals(target, Path.TrimEndingDirectorySeparator(sourceFolder), StringComparison.Ordinal))
            throw new IOException($"'{target}' is the base model's own folder; write the merged model somewhere else.");
        if (!force && AtomicFolder.IsNonEmptyFolder(target))
            throw new IOException($"The folder '{target}' is not empty; pass Force to replace its content with the merged model.");

        using var scope = NewDisposeScope();
        var tensors = MergedStateDict();
        AtomicFolder.Replace(target, force, temp =>
        {
            SafetensorsWriter.WriteSharded(temp, tensors, MaxShardBytes);
            WriteConfig(configPath, Path.Combine(temp, "config.json"));
            foreach (var file in CompanionFiles)
            {
                var source = Path.Combine(sourceFolder, file);
                if (File.Exists(source)) File.Copy(source, Path.Combine(temp, file));
            }
        }, BeforeCommit);
        return target;
    }

    void ThrowIfNothingToMerge()
    {
        if (_disabled) throw new InvalidOperationException("Adapters are disabled; call Enable() before merging (a merge folds in the active adapters).");
        if (_active.Count == 0) throw new InvalidOperationException("No adapter is active; add, load or activate one before merging.");
    }

    /// <summary>
    /// The merged model's tensors under the base checkpoint's key names, in the model's dtype. Targeted weights are
    /// new tensors (in the caller's dispose scope); everything else is the live parameter.
    /// </summary>
    internal List<KeyValuePair<string, Tensor>> MergedStateDict()
    {
        var tied = Model.TiedParameters.Select(t => t.Tied).ToHashSet(StringComparer.Ordinal);
        var fanInFanOut = Model.FanInFanOutModules;
        var result = new List<KeyValuePair<string, Tensor>>();
        var merged = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (key, value) in Model.state_dict().Concat(DequantizedWeights()))
        {
            if (tied.Contains(key)) continue;
            if (PlainKey(key, value, merged) is not (string plain, Tensor tensor)) continue;
            if (tied.Contains(plain)) continue;
            // GPT-2's Conv1D stores W as (in, out); the model holds (out, in).
            if (plain.EndsWith(".weight", StringComparison.Ordinal) && fanInFanOut.Contains(plain[..^".weight".Length]))
                tensor = tensor.t().contiguous();
            result.Add(new(plain, tensor));
        }
        return result;
    }

    /// <summary>True when some base weights are stored quantized: a merged checkpoint holds them dequantized.</summary>
    public bool IsBaseQuantized => Model.modules().Any(m => m is LoraPS.Quantization.QuantizedLinear);

    /// <summary>
    /// The weights of quantized layers, which are not in the state dict: <c>…base_layer.weight</c> of a LoRA layer (the
    /// merge computes it) and the dequantized <c>….weight</c> (compute dtype) of a quantized layer without adapters.
    /// </summary>
    IEnumerable<KeyValuePair<string, Tensor>> DequantizedWeights()
    {
        foreach (var (path, module) in PlainModules())
        {
            switch (module)
            {
                case LoraLinear { IsBaseQuantized: true } lora:
                    // PlainKey replaces this entry by the merged weight; the codes only stand in for it.
                    yield return new(path + ".base_layer.weight", lora.QuantizedBaseLayer!.Weight.Data);
                    break;
                case LoraPS.Quantization.QuantizedLinear quantized:
                    yield return new(path + ".weight", quantized.DequantizedWeight());
                    break;
            }
        }
    }

    /// <summary>
    /// Maps a state-dict key of the adapted model to the base checkpoint's key and tensor, or null when the key is
    /// adapter state: <c>q_proj.base_layer.weight</c> → <c>q_proj.weight</c> (merged), <c>q_proj.lora_A.x.weight</c> →
    /// dropped, <c>classifier.modules_to_save.x.weight</c> → <c>classifier.weight</c> for the active copy.
    /// </summary>
    (string, Tensor)? PlainKey(string key, Tensor value, Dictionary<string, Tensor> merged)
    {
        for (int dot = key.IndexOf('.'); dot > 0; dot = key.IndexOf('.', dot + 1))
        {
            var path = key[..dot];
            var rest = key[(dot + 1)..];
            if (_layers.TryGetValue(path, out var layer))
            {
                if (rest == "base_layer.weight")
                {
                    if (!merged.TryGetValue(path, out var weight)) merged[path] = weight = layer.MergedWeight(_active.Where(layer.Adapters.Contains));
                    return (path + ".weight", weight);
                }
                return rest.StartsWith("base_layer.", StringComparison.Ordinal) ? (path + "." + rest["base_layer.".Length..], value) : null;
            }
            if (_wrappers.TryGetValue(path, out var wrapper))
            {
                var copy = wrapper.ActiveAdapter;
                var prefix = copy is null ? "original_module." : $"modules_to_save.{copy}.";
                return rest.StartsWith(prefix, StringComparison.Ordinal) ? (path + "." + rest[prefix.Length..], value) : null;
            }
        }
        return (key, value);
    }

    /// <summary>
    /// Copies the base model's config.json, updating <c>torch_dtype</c> to the saved weights' dtype (as
    /// save_pretrained does) and the label maps when the head was resized at load.
    /// </summary>
    void WriteConfig(string sourceConfig, string destination)
    {
        var text = File.ReadAllText(sourceConfig);
        var root = JsonNode.Parse(text) as JsonObject
            ?? throw new InvalidDataException($"'{sourceConfig}' is not a JSON object.");
        bool changed = false;
        var dtype = DTypeName(Model.DType);
        var dtypeKey = root.ContainsKey("torch_dtype") || !root.ContainsKey("dtype") ? "torch_dtype" : "dtype";
        if (root[dtypeKey]?.GetValueKind() != JsonValueKind.String || root[dtypeKey]!.GetValue<string>() != dtype)
        {
            root[dtypeKey] = dtype;
            changed = true;
        }
        if (Model.HeadKind == ModelHeadKind.SequenceClassification && (root["id2label"] as JsonObject)?.Count != Model.Config.NumLabels)
        {
            // transformers derives num_labels from id2label; a head resized at load must be described here to reload.
            var labels = Enumerable.Range(0, Model.Config.NumLabels).ToList();
            root["id2label"] = new JsonObject(labels.Select(i => KeyValuePair.Create(i.ToString(System.Globalization.CultureInfo.InvariantCulture), (JsonNode?)$"LABEL_{i}")));
            root["label2id"] = new JsonObject(labels.Select(i => KeyValuePair.Create($"LABEL_{i}", (JsonNode?)i)));
            changed = true;
        }
        File.WriteAllText(destination, changed ? root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n" : text);
    }

    static string DTypeName(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => "float32",
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        ScalarType.Float64 => "float64",
        _ => throw new NotSupportedException($"Cannot describe dtype {dtype} in config.json."),
    };
}
