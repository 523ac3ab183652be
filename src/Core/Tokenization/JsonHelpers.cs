using System.Text.Json;

namespace LoraPS.Tokenization;

/// <summary>Small readers for tokenizer JSON files that say which file and key is wrong.</summary>
internal static class JsonHelpers
{
    /// <summary>The property's value, or null when it is absent or JSON null.</summary>
    public static JsonElement? Optional(this JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out JsonElement v) && v.ValueKind != JsonValueKind.Null
            ? v : null;

    public static bool Has(this JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out _);

    public static JsonElement Required(this JsonElement e, string name, string source) =>
        e.Optional(name) ?? throw new InvalidDataException($"{source}: missing \"{name}\" in {Abbreviate(e)}.");

    public static string RequiredString(this JsonElement e, string name, string source)
    {
        JsonElement v = e.Required(name, source);
        return v.ValueKind == JsonValueKind.String
            ? v.GetString()!
            : throw new InvalidDataException($"{source}: \"{name}\" must be a string in {Abbreviate(e)}.");
    }

    public static IEnumerable<JsonElement> RequiredArray(this JsonElement e, string name, string source)
    {
        JsonElement v = e.Required(name, source);
        return v.ValueKind == JsonValueKind.Array
            ? v.EnumerateArray()
            : throw new InvalidDataException($"{source}: \"{name}\" must be an array in {Abbreviate(e)}.");
    }

    public static string? OptionalString(this JsonElement e, string name) =>
        e.Optional(name) is { ValueKind: JsonValueKind.String } v ? v.GetString() : null;

    public static bool? OptionalBool(this JsonElement e, string name) =>
        e.Optional(name) is JsonElement v && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : null;

    public static double? OptionalDouble(this JsonElement e, string name) =>
        e.Optional(name) is { ValueKind: JsonValueKind.Number } v ? v.GetDouble() : null;

    public static int? OptionalInt(this JsonElement e, string name) =>
        e.Optional(name) is { ValueKind: JsonValueKind.Number } v && v.TryGetInt32(out int i) ? i : null;

    /// <summary>Reads a JSON file that may be absent; a present but unreadable file is an error naming it.</summary>
    public static JsonElement? ReadOptionalFile(string path)
    {
        if (!File.Exists(path))
        {
            return null;
        }
        return ReadFile(path);
    }

    public static JsonElement ReadFile(string path)
    {
        try
        {
            using FileStream stream = File.OpenRead(path);
            using JsonDocument doc = JsonDocument.Parse(stream, new JsonDocumentOptions
            {
                AllowTrailingCommas = true,
                CommentHandling = JsonCommentHandling.Skip,
            });
            return doc.RootElement.Clone();
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"'{path}' is not valid JSON: {ex.Message}", ex);
        }
    }

    private static string Abbreviate(JsonElement e)
    {
        string raw = e.GetRawText();
        return raw.Length <= 120 ? raw : raw[..117] + "...";
    }
}
