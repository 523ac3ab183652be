using System.Text.Json;

namespace LoraPS.Tokenization;

/// <summary>One item of a template: a run of special token ids, or sequence A or B; each with its token type id.</summary>
internal sealed record TemplateItem(IReadOnlyList<int> SpecialIds, char Sequence, int TypeId)
{
    public static TemplateItem Special(int id, int typeId) => new([id], '\0', typeId);

    public static TemplateItem Of(char sequence, int typeId) => new([], sequence, typeId);
}

/// <summary>
/// Where special tokens go around one or two encoded sequences, and which token type ids they get — the
/// "post_processor" of tokenizer.json (TemplateProcessing, BertProcessing, RobertaProcessing) or the
/// <c>build_inputs_with_special_tokens</c> of a slow transformers tokenizer.
/// </summary>
internal sealed class SpecialTokenTemplate(IReadOnlyList<TemplateItem> single, IReadOnlyList<TemplateItem> pair)
{
    public IReadOnlyList<TemplateItem> Single => single;

    public IReadOnlyList<TemplateItem> Pair => pair;

    /// <summary>No special tokens; the second sequence has type id 1 (tokenizers' default).</summary>
    public static SpecialTokenTemplate Plain { get; } = new([TemplateItem.Of('A', 0)], [TemplateItem.Of('A', 0), TemplateItem.Of('B', 1)]);

    /// <summary>Llama's <c>bos? A eos?</c> / <c>bos? A eos? bos? B eos?</c>, B with type id 1.</summary>
    public static SpecialTokenTemplate BosEos(int? bos, int? eos)
    {
        List<TemplateItem> Part(char sequence, int type)
        {
            var items = new List<TemplateItem>();
            if (bos is int b)
            {
                items.Add(TemplateItem.Special(b, type));
            }
            items.Add(TemplateItem.Of(sequence, type));
            if (eos is int e)
            {
                items.Add(TemplateItem.Special(e, type));
            }
            return items;
        }
        return new SpecialTokenTemplate(Part('A', 0), [.. Part('A', 0), .. Part('B', 1)]);
    }

    /// <summary>BERT: <c>[CLS] A [SEP]</c> / <c>[CLS] A [SEP] B [SEP]</c>, B and its [SEP] with type id 1.</summary>
    public static SpecialTokenTemplate Bert(int cls, int sep) => new(
        [TemplateItem.Special(cls, 0), TemplateItem.Of('A', 0), TemplateItem.Special(sep, 0)],
        [TemplateItem.Special(cls, 0), TemplateItem.Of('A', 0), TemplateItem.Special(sep, 0), TemplateItem.Of('B', 1), TemplateItem.Special(sep, 1)]);

    /// <summary>RoBERTa: <c>&lt;s&gt; A &lt;/s&gt;</c> / <c>&lt;s&gt; A &lt;/s&gt;&lt;/s&gt; B &lt;/s&gt;</c>; every type id is 0.</summary>
    public static SpecialTokenTemplate Roberta(int cls, int sep) => new(
        [TemplateItem.Special(cls, 0), TemplateItem.Of('A', 0), TemplateItem.Special(sep, 0)],
        [TemplateItem.Special(cls, 0), TemplateItem.Of('A', 0), TemplateItem.Special(sep, 0),
         TemplateItem.Special(sep, 0), TemplateItem.Of('B', 0), TemplateItem.Special(sep, 0)]);

    /// <summary>Whether the single-text template is only <c>bos? A eos?</c> (what add_bos_token/add_eos_token may rewrite).</summary>
    public bool IsBosEosShaped(ResolvedSpecialTokens specials) =>
        single.Count(i => i.Sequence == 'A') == 1 &&
        single.All(i => i.Sequence != '\0' || (i.SpecialIds.Count == 1 &&
            (i.SpecialIds[0] == specials.Bos || specials.Eos.Contains(i.SpecialIds[0]))));

    /// <summary>Whether a single text starts with exactly this special token.</summary>
    public bool StartsWith(int? id) => id is not null && single.Count > 0 && single[0] is { Sequence: '\0' } first &&
        first.SpecialIds.Count == 1 && first.SpecialIds[0] == id;

    /// <summary>Whether a single text ends with exactly this special token.</summary>
    public bool EndsWith(int? id) => id is not null && single.Count > 0 && single[^1] is { Sequence: '\0' } last &&
        last.SpecialIds.Count == 1 && last.SpecialIds[0] == id;

    /// <summary>Lays out ids and token type ids. Without special tokens only the sequences (and their type ids) remain.</summary>
    public EncodedPair Apply(IReadOnlyList<int> a, IReadOnlyList<int>? b, bool addSpecialTokens)
    {
        var ids = new List<int>(a.Count + (b?.Count ?? 0) + 4);
        var types = new List<int>(ids.Capacity);
        foreach (TemplateItem item in b is null ? single : pair)
        {
            if (item.Sequence == '\0')
            {
                if (addSpecialTokens)
                {
                    ids.AddRange(item.SpecialIds);
                    types.AddRange(Enumerable.Repeat(item.TypeId, item.SpecialIds.Count));
                }
                continue;
            }
            IReadOnlyList<int> sequence = item.Sequence == 'A' ? a : b!;
            ids.AddRange(sequence);
            types.AddRange(Enumerable.Repeat(item.TypeId, sequence.Count));
        }
        return new EncodedPair(ids, types);
    }

    /// <summary>Reads a tokenizer.json "post_processor"; null means <see cref="Plain"/>.</summary>
    public static SpecialTokenTemplate FromJson(JsonElement? json, string source)
    {
        if (json is not JsonElement e)
        {
            return Plain;
        }
        string type = e.RequiredString("type", source);
        switch (type)
        {
            case "ByteLevel":
                return Plain;   // only trims offsets
            case "TemplateProcessing":
                return FromTemplateProcessing(e, source);
            case "BertProcessing":
                return Bert(ReadIdPair(e.Required("cls", source), source), ReadIdPair(e.Required("sep", source), source));
            case "RobertaProcessing":
                return Roberta(ReadIdPair(e.Required("cls", source), source), ReadIdPair(e.Required("sep", source), source));
            case "Sequence":
                // e.g. Llama 3: [ByteLevel (offsets only), TemplateProcessing]. The last template-making step wins.
                SpecialTokenTemplate result = Plain;
                foreach (JsonElement step in e.RequiredArray("processors", source))
                {
                    SpecialTokenTemplate t = FromJson(step, source);
                    if (!ReferenceEquals(t, Plain))
                    {
                        result = t;
                    }
                }
                return result;
            default:
                throw new NotSupportedException(
                    $"{source}: post_processor type '{type}' is not supported (supported: TemplateProcessing, BertProcessing, " +
                    "RobertaProcessing, ByteLevel, Sequence).");
        }
    }

    private static int ReadIdPair(JsonElement pair, string source) =>
        pair.ValueKind == JsonValueKind.Array && pair.GetArrayLength() == 2 && pair[1].TryGetInt32(out int id)
            ? id : throw new InvalidDataException($"{source}: expected [\"token\", id], found {pair.GetRawText()}.");

    private static SpecialTokenTemplate FromTemplateProcessing(JsonElement e, string source)
    {
        var specials = new Dictionary<string, IReadOnlyList<int>>(StringComparer.Ordinal);
        if (e.Optional("special_tokens") is JsonElement map)
        {
            foreach (JsonProperty p in map.EnumerateObject())
            {
                specials[p.Name] = p.Value.RequiredArray("ids", source).Select(i => i.GetInt32()).ToArray();
            }
        }

        List<TemplateItem> Read(string name) => e.RequiredArray(name, source).Select(item =>
        {
            if (item.Optional("Sequence") is JsonElement seq)
            {
                string id = seq.RequiredString("id", source);
                return TemplateItem.Of(id == "A" ? 'A' : id == "B" ? 'B'
                    : throw new InvalidDataException($"{source}: template sequence id must be A or B, found '{id}'."),
                    seq.OptionalInt("type_id") ?? 0);
            }
            if (item.Optional("SpecialToken") is JsonElement special)
            {
                string id = special.RequiredString("id", source);
                return new TemplateItem(specials.TryGetValue(id, out var ids) ? ids
                    : throw new InvalidDataException($"{source}: template uses special token '{id}' that is not in its special_tokens."),
                    '\0', special.OptionalInt("type_id") ?? 0);
            }
            throw new InvalidDataException($"{source}: unknown template item {item.GetRawText()}.");
        }).ToList();

        return new SpecialTokenTemplate(Read("single"), Read("pair"));
    }
}
