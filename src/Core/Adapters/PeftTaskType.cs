namespace LoraPS.Adapters;

/// <summary>PEFT's <c>TaskType</c> (<c>src/peft/utils/peft_types.py</c>): which model head the adapter was trained with.</summary>
public enum PeftTaskType
{
    /// <summary><c>SEQ_CLS</c>: sequence classification; PEFT also trains and saves the <c>classifier</c>/<c>score</c> head.</summary>
    SequenceClassification,
    /// <summary><c>SEQ_2_SEQ_LM</c>.</summary>
    Seq2SeqLM,
    /// <summary><c>CAUSAL_LM</c>.</summary>
    CausalLM,
    /// <summary><c>TOKEN_CLS</c>.</summary>
    TokenClassification,
    /// <summary><c>QUESTION_ANS</c>.</summary>
    QuestionAnswering,
    /// <summary><c>FEATURE_EXTRACTION</c>.</summary>
    FeatureExtraction,
}

/// <summary>Which biases PEFT's <c>bias</c> option trains and saves.</summary>
public enum LoraBiasMode
{
    /// <summary><c>"none"</c>: no bias is trained.</summary>
    None,
    /// <summary><c>"all"</c>: every <c>*.bias</c> of the model is trained and saved.</summary>
    All,
    /// <summary><c>"lora_only"</c>: only the biases of the wrapped layers (<c>&lt;module&gt;.base_layer.bias</c>).</summary>
    LoraOnly,
}

/// <summary>The spellings PEFT writes for <see cref="PeftTaskType"/> and <see cref="LoraBiasMode"/>.</summary>
public static class PeftNames
{
    static readonly (PeftTaskType Type, string Name)[] TaskNames =
    [
        (PeftTaskType.SequenceClassification, "SEQ_CLS"),
        (PeftTaskType.Seq2SeqLM, "SEQ_2_SEQ_LM"),
        (PeftTaskType.CausalLM, "CAUSAL_LM"),
        (PeftTaskType.TokenClassification, "TOKEN_CLS"),
        (PeftTaskType.QuestionAnswering, "QUESTION_ANS"),
        (PeftTaskType.FeatureExtraction, "FEATURE_EXTRACTION"),
    ];

    public static string ToPeftName(this PeftTaskType taskType) =>
        TaskNames.First(t => t.Type == taskType).Name;

    /// <summary>Parses <c>"CAUSAL_LM"</c> etc.; throws <see cref="FormatException"/> listing the valid names.</summary>
    public static PeftTaskType ParseTaskType(string name)
    {
        foreach (var (type, peftName) in TaskNames)
        {
            if (peftName == name) return type;
        }
        throw new FormatException($"task_type '{name}' is not a PEFT task type; use one of {string.Join(", ", TaskNames.Select(t => t.Name))}.");
    }

    public static string ToPeftName(this LoraBiasMode bias) => bias switch
    {
        LoraBiasMode.None => "none",
        LoraBiasMode.All => "all",
        LoraBiasMode.LoraOnly => "lora_only",
        _ => throw new ArgumentOutOfRangeException(nameof(bias), bias, null),
    };

    /// <summary>Parses <c>"none"</c>, <c>"all"</c>, <c>"lora_only"</c>.</summary>
    public static LoraBiasMode ParseBias(string name) => name switch
    {
        "none" => LoraBiasMode.None,
        "all" => LoraBiasMode.All,
        "lora_only" => LoraBiasMode.LoraOnly,
        _ => throw new FormatException($"bias '{name}' is not valid; use 'none', 'all' or 'lora_only'."),
    };
}
