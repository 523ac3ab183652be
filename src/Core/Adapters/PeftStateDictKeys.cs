namespace LoraPS.Adapters;

/// <summary>
/// Maps between a <see cref="LoraLinear"/>'s in-memory parameter names and the keys of PEFT's
/// <c>adapter_model.safetensors</c> (<c>get_peft_model_state_dict</c> / <c>set_peft_model_state_dict</c>).
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>The file key is <see cref="Prefix"/> + the HF module path + the parameter, with the adapter name removed:
/// <c>lora_A.default.weight</c> at <c>model.layers.0.self_attn.q_proj</c> is saved as
/// <c>base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight</c> (for a Llama CausalLM the HF path itself
/// starts with <c>model.</c>, hence <c>model.model.</c>).</item>
/// <item>DoRA's <c>lora_magnitude_vector.default.weight</c> is saved as <c>…lora_magnitude_vector</c>: PEFT strips
/// the trailing <c>.weight</c> for backward compatibility.</item>
/// <item>Base-layer biases (PEFT <c>bias="all"/"lora_only"</c>) keep their in-memory name: <c>…q_proj.base_layer.bias</c>.</item>
/// </list>
/// </remarks>
public static class PeftStateDictKeys
{
    /// <summary>PeftModel → LoraModel → HF model.</summary>
    public const string Prefix = "base_model.model.";

    /// <summary>The adapter name PEFT uses when none is given.</summary>
    public const string DefaultAdapterName = "default";

    static readonly string[] AdapterDicts = ["lora_A", "lora_B", "lora_magnitude_vector", "lora_embedding_A", "lora_embedding_B"];

    /// <summary>
    /// The file key for a <see cref="LoraLinear"/> state-dict key (<c>lora_A.&lt;adapter&gt;.weight</c>,
    /// <c>lora_B.&lt;adapter&gt;.weight</c>, <c>lora_magnitude_vector.&lt;adapter&gt;.weight</c>, <c>base_layer.bias</c>, …)
    /// of the layer at <paramref name="modulePath"/>.
    /// </summary>
    public static string ToPeft(string modulePath, string layerKey)
    {
        ArgumentException.ThrowIfNullOrEmpty(modulePath);
        ArgumentException.ThrowIfNullOrEmpty(layerKey);
        var parts = layerKey.Split('.');
        string local;
        if (AdapterDicts.Contains(parts[0]) && parts.Length == 2 && parts[0].StartsWith("lora_embedding", StringComparison.Ordinal))
        {
            local = parts[0]; // embedding LoRA factors are raw parameters: "lora_embedding_A.<adapter>"
        }
        else if (AdapterDicts.Contains(parts[0]))
        {
            if (parts.Length < 3)
                throw new ArgumentException($"'{layerKey}' is not an adapter parameter key; expected '<dict>.<adapter>.<param>', e.g. 'lora_A.default.weight'.", nameof(layerKey));
            var rest = parts.Skip(2).ToList();
            // PEFT: DoRA's magnitude is saved without its ".weight".
            if (parts[0] == "lora_magnitude_vector" && rest is ["weight"]) rest.Clear();
            local = string.Join('.', [parts[0], .. rest]);
        }
        else
        {
            local = layerKey;
        }
        return Prefix + modulePath + "." + local;
    }

    /// <summary>
    /// Splits a PEFT file key of a LoRA parameter into the module path and the in-memory layer key for
    /// <paramref name="adapter"/>. Returns false for keys that are not LoRA parameters (e.g. a modules_to_save
    /// <c>base_model.model.classifier.weight</c>).
    /// </summary>
    public static bool TryFromPeft(string peftKey, string adapter, out string modulePath, out string layerKey)
    {
        ArgumentNullException.ThrowIfNull(peftKey);
        ArgumentException.ThrowIfNullOrEmpty(adapter);
        modulePath = layerKey = "";
        var key = peftKey.StartsWith(Prefix, StringComparison.Ordinal) ? peftKey[Prefix.Length..] : peftKey;
        foreach (var dict in AdapterDicts)
        {
            var marker = "." + dict;
            int at = key.LastIndexOf(marker, StringComparison.Ordinal);
            if (at <= 0) continue;
            var tail = key[(at + marker.Length)..];
            if (tail.Length > 0 && tail[0] != '.') continue; // e.g. "lora_A" inside a longer name
            modulePath = key[..at];
            var param = tail.TrimStart('.');
            if (dict == "lora_magnitude_vector" && param.Length == 0) param = "weight";
            if (param.Length == 0)
            {
                if (!dict.StartsWith("lora_embedding", StringComparison.Ordinal)) return false;
                layerKey = $"{dict}.{adapter}";
                return true;
            }
            layerKey = $"{dict}.{adapter}.{param}";
            return true;
        }
        return false;
    }
}
