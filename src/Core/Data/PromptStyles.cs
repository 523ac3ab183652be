namespace LoraPS.Data;

/// <summary>
/// Turns an instruction example into the prompt text the model sees before the response. Implement this to add a
/// template (a chat format, a model's own instruction format) and register it in <see cref="PromptStyles"/>.
/// </summary>
public interface IPromptStyle
{
    /// <summary>The name recorded in run.json and accepted by <see cref="PromptStyles.FromName"/>, e.g. "alpaca".</summary>
    string Name { get; }

    /// <summary>The prompt; the response is appended right after it (as separately encoded tokens).</summary>
    string Apply(InstructionExample example);
}

/// <summary>
/// Stanford Alpaca's template, byte for byte as LitGPT's <c>prompts.Alpaca</c>: a longer preamble and an
/// "### Input:" section when the input is non-empty, the shorter preamble otherwise. The response follows
/// "### Response:\n" directly.
/// </summary>
public sealed class AlpacaPromptStyle : IPromptStyle
{
    public const string WithInputPreamble =
        "Below is an instruction that describes a task, paired with an input that provides further context. " +
        "Write a response that appropriately completes the request.\n\n";

    public const string WithoutInputPreamble =
        "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n";

    public string Name => "alpaca";

    public string Apply(InstructionExample example)
    {
        ArgumentNullException.ThrowIfNull(example);
        // LitGPT tests `if kwargs.get("input")`: only the empty string counts as "no input"; whitespace is an input.
        return example.Input.Length > 0
            ? $"{WithInputPreamble}### Instruction:\n{example.Instruction}\n\n### Input:\n{example.Input}\n\n### Response:\n"
            : $"{WithoutInputPreamble}### Instruction:\n{example.Instruction}\n\n### Response:\n";
    }
}

/// <summary>
/// No template: the prompt is the instruction itself (LitGPT's "default" style), followed by a newline and the
/// input when there is one. Right for data that already carries its own format, such as GPT-3 arithmetic's
/// "Q: What is 17 minus 14?\n\nA:" with the response " 3".
/// </summary>
public sealed class PlainPromptStyle : IPromptStyle
{
    public string Name => "plain";

    public string Apply(InstructionExample example)
    {
        ArgumentNullException.ThrowIfNull(example);
        return example.Input.Length > 0 ? $"{example.Instruction}\n{example.Input}" : example.Instruction;
    }
}

/// <summary>The known prompt styles by name (case-insensitive).</summary>
public static class PromptStyles
{
    public static IPromptStyle Alpaca { get; } = new AlpacaPromptStyle();

    public static IPromptStyle Plain { get; } = new PlainPromptStyle();

    private static readonly Dictionary<string, IPromptStyle> ByName = new(StringComparer.OrdinalIgnoreCase)
    {
        [Alpaca.Name] = Alpaca,
        [Plain.Name] = Plain,
        ["default"] = Plain,   // LitGPT's name for the same thing
    };

    /// <summary>The names <see cref="FromName"/> accepts.</summary>
    public static IReadOnlyCollection<string> Names => ByName.Keys;

    /// <exception cref="ArgumentException">No style has that name; the message lists the known ones.</exception>
    public static IPromptStyle FromName(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return ByName.TryGetValue(name.Trim(), out IPromptStyle? style)
            ? style
            : throw new ArgumentException($"Unknown prompt style '{name}'. Known styles: {string.Join(", ", ByName.Keys)}.", nameof(name));
    }
}
