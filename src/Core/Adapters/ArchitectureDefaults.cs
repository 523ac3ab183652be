namespace LoraPS.Adapters;

/// <summary>
/// PEFT's <c>TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING</c> (<c>src/peft/utils/constants.py</c>): the modules
/// LoRA targets when a config names none. Keys are the <c>model_type</c> of the HF <c>config.json</c>.
/// </summary>
/// <remarks>
/// For Llama-family models this is query+value (<c>q_proj</c>, <c>v_proj</c>), the choice of the LoRA paper that
/// LitGPT also makes by default (<c>lora_query</c> and <c>lora_value</c> on, the others off).
/// </remarks>
public static class ArchitectureDefaults
{
    static readonly Dictionary<string, string[]> TargetModules = new(StringComparer.Ordinal)
    {
        ["t5"] = ["q", "v"],
        ["mt5"] = ["q", "v"],
        ["bart"] = ["q_proj", "v_proj"],
        ["gpt2"] = ["c_attn"],
        ["bloom"] = ["query_key_value"],
        ["blip-2"] = ["q", "v", "q_proj", "v_proj"],
        ["opt"] = ["q_proj", "v_proj"],
        ["gptj"] = ["q_proj", "v_proj"],
        ["gpt_neox"] = ["query_key_value"],
        ["gpt_neo"] = ["q_proj", "v_proj"],
        ["bert"] = ["query", "value"],
        ["roberta"] = ["query", "value"],
        ["xlm-roberta"] = ["query", "value"],
        ["electra"] = ["query", "value"],
        ["deberta-v2"] = ["query_proj", "value_proj"],
        ["deberta"] = ["in_proj"],
        ["layoutlm"] = ["query", "value"],
        ["llama"] = ["q_proj", "v_proj"],
        ["llama4"] = ["q_proj", "v_proj"],
        ["chatglm"] = ["query_key_value"],
        ["gpt_bigcode"] = ["c_attn"],
        ["mpt"] = ["Wqkv"],
        ["RefinedWebModel"] = ["query_key_value"],
        ["RefinedWeb"] = ["query_key_value"],
        ["falcon"] = ["query_key_value"],
        ["btlm"] = ["c_proj", "c_attn"],
        ["codegen"] = ["qkv_proj"],
        ["mistral"] = ["q_proj", "v_proj"],
        ["mixtral"] = ["q_proj", "v_proj"],
        ["stablelm"] = ["q_proj", "v_proj"],
        ["phi"] = ["q_proj", "v_proj", "fc1", "fc2"],
        ["gemma"] = ["q_proj", "v_proj"],
        ["gemma2"] = ["q_proj", "v_proj"],
        ["gemma3_text"] = ["q_proj", "v_proj"],
        ["qwen2"] = ["q_proj", "v_proj"],
        ["qwen3"] = ["q_proj", "v_proj"],
    };

    /// <summary>The model types that have a default.</summary>
    public static IReadOnlyCollection<string> KnownModelTypes => TargetModules.Keys;

    /// <summary>The default target module names for <paramref name="modelType"/>, or null when PEFT has none.</summary>
    public static IReadOnlyList<string>? DefaultTargetModules(string? modelType) =>
        modelType is not null && TargetModules.TryGetValue(modelType, out var names) ? names : null;
}
