using System.Collections;
using System.Globalization;
using System.Text.Json;

namespace LoraPS.Data;

/// <summary>
/// Which record property holds which part of an example. Unset properties are found by name (case-insensitive):
/// <list type="bullet">
/// <item>instruction data: prompt = instruction | prompt | question | context; input = input (optional);
/// response = output | response | completion | answer — Alpaca, GSM8K and GPT-3 arithmetic work as they are;</item>
/// <item>plain text: text;</item>
/// <item>classification: label; the text = sentence | text, or a GLUE pair sentence1/sentence2,
/// question1/question2, premise/hypothesis, question/sentence, text/text_pair.</item>
/// </list>
/// </summary>
public sealed record PropertyMapping
{
    public string? PromptProperty { get; init; }

    public string? InputProperty { get; init; }

    public string? ResponseProperty { get; init; }

    public string? TextProperty { get; init; }

    public string? TextPairProperty { get; init; }

    public string? LabelProperty { get; init; }

    internal static readonly string[] PromptNames = ["instruction", "prompt", "question", "context"];
    internal static readonly string[] InputNames = ["input"];
    internal static readonly string[] ResponseNames = ["output", "response", "completion", "answer"];
    internal static readonly string[] TextNames = ["text"];
    internal static readonly string[] LabelNames = ["label"];
    internal static readonly (string Text, string Pair)[] PairNames =
        [("sentence1", "sentence2"), ("question1", "question2"), ("premise", "hypothesis"), ("question", "sentence"), ("text", "text_pair")];
    internal static readonly string[] ClassificationTextNames = ["sentence", "text"];

    /// <summary>The set properties, e.g. "prompt=instruction, input=input, response=output".</summary>
    public override string ToString()
    {
        var parts = new List<string>();
        void Add(string role, string? name)
        {
            if (name is not null)
            {
                parts.Add($"{role}={name}");
            }
        }
        Add("prompt", PromptProperty);
        Add("input", InputProperty);
        Add("response", ResponseProperty);
        Add("text", TextProperty);
        Add("textPair", TextPairProperty);
        Add("label", LabelProperty);
        return string.Join(", ", parts);
    }

    /// <summary>
    /// Decides the format (when <paramref name="format"/> is Auto) and the property names from the first record:
    /// given names win; the rest are looked up among the default names. Auto-detection only picks a format that
    /// is unambiguous; otherwise the error lists the record's properties and says what to set.
    /// </summary>
    internal static (DatasetFormat Format, PropertyMapping Mapping) Resolve(DatasetFormat format, PropertyMapping given, DataRecord first)
    {
        string? Find(IEnumerable<string> names) =>
            names.Select(n => first.TryGet(n, out string key, out _) ? key : null).FirstOrDefault(k => k is not null);

        (string Text, string Pair)? FindPair() =>
            PairNames.Select(p => (Text: Find([p.Text]), Pair: Find([p.Pair])))
                .Where(p => p.Text is not null && p.Pair is not null)
                .Select(p => ((string, string)?)(p.Text!, p.Pair!))
                .FirstOrDefault();

        // Given names are reported as the first record spells them ("Output" for -ResponseProperty output).
        given = new PropertyMapping
        {
            PromptProperty = AsSpelled(given.PromptProperty),
            InputProperty = AsSpelled(given.InputProperty),
            ResponseProperty = AsSpelled(given.ResponseProperty),
            TextProperty = AsSpelled(given.TextProperty),
            TextPairProperty = AsSpelled(given.TextPairProperty),
            LabelProperty = AsSpelled(given.LabelProperty),
        };
        string? AsSpelled(string? name) => name is null ? null : Find([name]) ?? name;

        if (format == DatasetFormat.Auto)
        {
            format = DetectFormat();
        }

        return format switch
        {
            DatasetFormat.Instruction => (format, new PropertyMapping
            {
                PromptProperty = given.PromptProperty ?? Find(PromptNames) ?? throw Missing("prompt (instruction)", "PromptProperty", PromptNames),
                InputProperty = given.InputProperty ?? Find(InputNames),
                ResponseProperty = given.ResponseProperty ?? Find(ResponseNames) ?? throw Missing("response", "ResponseProperty", ResponseNames),
            }),
            DatasetFormat.Text => (format, new PropertyMapping
            {
                TextProperty = given.TextProperty ?? Find(TextNames) ?? throw Missing("text", "TextProperty", TextNames),
            }),
            DatasetFormat.Classification => (format, ResolveClassification()),
            _ => throw new ArgumentOutOfRangeException(nameof(format)),
        };

        PropertyMapping ResolveClassification()
        {
            string label = given.LabelProperty ?? Find(LabelNames) ?? throw Missing("label", "LabelProperty", LabelNames);
            string? text = given.TextProperty;
            string? pair = given.TextPairProperty;
            if (text is null && pair is null && FindPair() is (string t, string p))
            {
                (text, pair) = (t, p);
            }
            text ??= Find(ClassificationTextNames) ?? throw Missing("text", "TextProperty", ClassificationTextNames);
            return new PropertyMapping { TextProperty = text, TextPairProperty = pair, LabelProperty = label };
        }

        DatasetFormat DetectFormat()
        {
            if (given.PromptProperty is not null || given.InputProperty is not null || given.ResponseProperty is not null)
            {
                return DatasetFormat.Instruction;
            }
            if (given.LabelProperty is not null || given.TextPairProperty is not null)
            {
                return DatasetFormat.Classification;
            }
            bool hasLabel = Find(LabelNames) is not null;
            bool instruction = Find(PromptNames) is not null && Find(ResponseNames) is not null;
            bool classification = hasLabel && (given.TextProperty is not null || FindPair() is not null || Find(ClassificationTextNames) is not null);
            bool text = given.TextProperty is not null || Find(TextNames) is not null;
            if (instruction && classification)
            {
                throw new DatasetFormatException(first.Location,
                    $"cannot tell whether this is instruction or classification data: the record has {first.DescribeProperties()}. Set the format (Instruction or Classification).");
            }
            if (instruction)
            {
                return DatasetFormat.Instruction;
            }
            if (classification)
            {
                return DatasetFormat.Classification;
            }
            if (text)
            {
                return DatasetFormat.Text;
            }
            throw new DatasetFormatException(first.Location,
                $"cannot tell the dataset format from the properties {first.DescribeProperties()}. Expected instruction data " +
                "(instruction, optional input, output), plain text (text) or classification (sentence or text, and label). " +
                "Name the properties to use (PromptProperty/ResponseProperty, TextProperty, LabelProperty) or set the format.");
        }

        DatasetFormatException Missing(string role, string setting, string[] names) => new(first.Location,
            $"no property for the {role}: looked for {string.Join(", ", names.Select(n => $"'{n}'"))}; the record has {first.DescribeProperties()}. " +
            $"Set {setting} to the property that holds the {role.Split(' ')[0]}.");
    }

    /// <summary>A property's value as text; a missing property or null is an error naming the record.</summary>
    internal static string RequireText(DataRecord record, string property, string role, string setting)
    {
        if (!record.TryGet(property, out string key, out object? value))
        {
            throw new DatasetFormatException(record.Location,
                $"missing property '{property}' (the {role}); the record has {record.DescribeProperties()}. " +
                $"Every record needs it, or set {setting} to another property.");
        }
        return AsText(value, record.Location, key) ?? throw new DatasetFormatException(record.Location,
            $"property '{key}' (the {role}) is null; every record needs a {role}.");
    }

    /// <summary>A property's value as text, or null when it is missing or null.</summary>
    internal static string? OptionalText(DataRecord record, string property) =>
        record.TryGet(property, out string key, out object? value) ? AsText(value, record.Location, key) : null;

    /// <summary>Scalars become text (numbers in the invariant culture); lists and objects are errors.</summary>
    internal static string? AsText(object? value, RecordLocation location, string property) => value switch
    {
        null => null,
        string s => s,
        JsonElement { ValueKind: JsonValueKind.Array } => throw NotText(location, property, "an array"),
        JsonElement { ValueKind: JsonValueKind.Object } => throw NotText(location, property, "an object"),
        JsonElement e => e.ToString(),
        bool b => b ? "True" : "False",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        IEnumerable => throw NotText(location, property, "a list"),
        _ => value.ToString(),
    };

    private static DatasetFormatException NotText(RecordLocation location, string property, string what) =>
        new(location, $"property '{property}' is {what}; expected text.");
}
