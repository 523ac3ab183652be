using System.Text.Json;

namespace LoraPS.Tokenization;

/// <summary>A special-token setting from tokenizer files: not mentioned, explicitly null, or a token string.</summary>
internal readonly record struct TokenSetting(bool Mentioned, string? Token)
{
    public static TokenSetting Unmentioned => default;
}

/// <summary>
/// What the files around a tokenizer say about special tokens and behaviour: tokenizer_config.json,
/// special_tokens_map.json, generation_config.json and config.json.
/// </summary>
internal sealed class TokenizerSettings
{
    private static readonly string[] SpecialKeys = ["bos_token", "eos_token", "unk_token", "pad_token", "cls_token", "sep_token", "mask_token"];

    private readonly Dictionary<string, TokenSetting> _tokens = [];

    public string? TokenizerClass { get; private init; }

    public bool? AddBosToken { get; private init; }

    public bool? AddEosToken { get; private init; }

    public bool? DoLowerCase { get; private init; }

    public bool? DoBasicTokenize { get; private init; }

    public bool? TokenizeChineseChars { get; private init; }

    public bool? StripAccents { get; private init; }

    public bool? Legacy { get; private init; }

    public bool? CleanUpTokenizationSpaces { get; private init; }

    public List<AddedToken> AddedTokensDecoder { get; } = [];

    public List<string> AdditionalSpecialTokens { get; } = [];

    /// <summary>bos/eos/pad ids from generation_config.json, or config.json when there is none (as transformers' generate does).</summary>
    public int? GenerationBosId { get; private init; }

    public List<int> GenerationEosIds { get; } = [];

    public int? GenerationPadId { get; private init; }

    public TokenSetting Token(string key) => _tokens.GetValueOrDefault(key);

    public static TokenizerSettings Read(string directory)
    {
        string tcPath = Path.Combine(directory, "tokenizer_config.json");
        string stmPath = Path.Combine(directory, "special_tokens_map.json");
        JsonElement? tc = JsonHelpers.ReadOptionalFile(tcPath);
        JsonElement? stm = JsonHelpers.ReadOptionalFile(stmPath);
        JsonElement? gen = JsonHelpers.ReadOptionalFile(Path.Combine(directory, "generation_config.json"));
        JsonElement? cfg = JsonHelpers.ReadOptionalFile(Path.Combine(directory, "config.json"));
        JsonElement? idSource = gen ?? cfg;

        var s = new TokenizerSettings
        {
            TokenizerClass = tc?.OptionalString("tokenizer_class"),
            AddBosToken = tc?.OptionalBool("add_bos_token"),
            AddEosToken = tc?.OptionalBool("add_eos_token"),
            DoLowerCase = tc?.OptionalBool("do_lower_case"),
            DoBasicTokenize = tc?.OptionalBool("do_basic_tokenize"),
            TokenizeChineseChars = tc?.OptionalBool("tokenize_chinese_chars"),
            StripAccents = tc?.OptionalBool("strip_accents"),
            Legacy = tc?.OptionalBool("legacy"),
            CleanUpTokenizationSpaces = tc?.OptionalBool("clean_up_tokenization_spaces"),
            GenerationBosId = FirstId(idSource, "bos_token_id") ?? FirstId(cfg, "bos_token_id"),
            GenerationPadId = FirstId(idSource, "pad_token_id") ?? FirstId(cfg, "pad_token_id"),
        };
        s.GenerationEosIds.AddRange(Ids(idSource, "eos_token_id"));
        if (s.GenerationEosIds.Count == 0)
        {
            s.GenerationEosIds.AddRange(Ids(cfg, "eos_token_id"));
        }

        // transformers lets special_tokens_map.json override tokenizer_config.json only for files written before
        // added_tokens_decoder existed (its "legacy" loading branch); newer tokenizer_config.json files win.
        bool configWins = tc?.Has("added_tokens_decoder") == true;
        foreach ((JsonElement? file, string source) in configWins ? new[] { (stm, stmPath), (tc, tcPath) } : new[] { (tc, tcPath), (stm, stmPath) })
        {
            if (file is not JsonElement f)
            {
                continue;
            }
            foreach (string key in SpecialKeys)
            {
                if (f.Has(key))
                {
                    s._tokens[key] = new TokenSetting(true, TokenContent(f.GetProperty(key), source, key));
                }
            }
            if (f.Optional("additional_special_tokens") is { ValueKind: JsonValueKind.Array } extra)
            {
                s.AdditionalSpecialTokens.Clear();
                s.AdditionalSpecialTokens.AddRange(extra.EnumerateArray()
                    .Select(t => TokenContent(t, source, "additional_special_tokens")).OfType<string>());
            }
        }

        if (tc?.Optional("added_tokens_decoder") is { ValueKind: JsonValueKind.Object } decoder)
        {
            foreach (JsonProperty p in decoder.EnumerateObject())
            {
                if (!int.TryParse(p.Name, out int id) || TokenContent(p.Value, tcPath, "added_tokens_decoder") is not string content)
                {
                    throw new InvalidDataException($"{tcPath}: malformed added_tokens_decoder entry \"{p.Name}\".");
                }
                s.AddedTokensDecoder.Add(ReadAddedToken(p.Value, id, content));
            }
        }
        return s;
    }

    /// <summary>Reads an added token object ({"content", "special", "lstrip", ...}) from tokenizer.json or tokenizer_config.json.</summary>
    internal static AddedToken ReadAddedToken(JsonElement e, int id, string content)
    {
        bool special = e.OptionalBool("special") ?? false;
        return new AddedToken(id, content, special,
            SingleWord: e.OptionalBool("single_word") ?? false,
            LStrip: e.OptionalBool("lstrip") ?? false,
            RStrip: e.OptionalBool("rstrip") ?? false,
            // tokenizers' default: special tokens are matched in raw text, others after normalization.
            Normalized: e.OptionalBool("normalized") ?? !special);
    }

    /// <summary>A token written as "text", as {"content": "text", ...}, or null.</summary>
    private static string? TokenContent(JsonElement value, string source, string key) => value.ValueKind switch
    {
        JsonValueKind.Null => null,
        JsonValueKind.String => value.GetString(),
        JsonValueKind.Object => value.OptionalString("content")
            ?? throw new InvalidDataException($"{source}: \"{key}\" is an object without \"content\"."),
        _ => throw new InvalidDataException($"{source}: \"{key}\" must be a token string or {{\"content\": …}}, found {value.GetRawText()}."),
    };

    private static int? FirstId(JsonElement? file, string key) => Ids(file, key).Select(i => (int?)i).FirstOrDefault();

    /// <summary>An id or a list of ids (Llama 3's eos_token_id is a list).</summary>
    private static IEnumerable<int> Ids(JsonElement? file, string key)
    {
        if (file?.Optional(key) is not JsonElement v)
        {
            return [];
        }
        return v.ValueKind switch
        {
            JsonValueKind.Number when v.TryGetInt32(out int id) => [id],
            JsonValueKind.Array => v.EnumerateArray().Where(x => x.ValueKind == JsonValueKind.Number).Select(x => x.GetInt32()).ToArray(),
            _ => [],
        };
    }
}
