using System.Globalization;
using System.Text.Json;

namespace LoraPS.Data;

/// <summary>
/// Class ids and their names. When every label in the data is a whole number (5, "5", 5.0) the numbers are the
/// class ids, as in GLUE (names "0", "1", …, up to the largest id). Otherwise the labels are names: the distinct
/// names sorted by ordinal comparison get ids 0, 1, … — deterministic whatever the record order.
/// </summary>
public sealed class LabelMap
{
    /// <summary>Integer labels larger than this are surely not class ids (a classification head has a row per class).</summary>
    public const int MaxClasses = 100_000;

    private readonly Dictionary<string, int> _ids;

    private LabelMap(IReadOnlyList<string> names, bool integerLabels)
    {
        Names = names;
        IntegerLabels = integerLabels;
        _ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < names.Count; i++)
        {
            if (!_ids.TryAdd(names[i], i))
            {
                throw new ArgumentException($"Label name '{names[i]}' appears twice.", nameof(names));
            }
        }
    }

    /// <summary>The class names; the index is the class id.</summary>
    public IReadOnlyList<string> Names { get; }

    public int Count => Names.Count;

    /// <summary>Whether the data's labels were whole numbers used directly as class ids.</summary>
    public bool IntegerLabels { get; }

    /// <summary>A map with the given names in the given order (e.g. to match an existing classification head).</summary>
    public static LabelMap FromNames(IEnumerable<string> names)
    {
        ArgumentNullException.ThrowIfNull(names);
        List<string> list = names.ToList();
        return list.Count == 0 ? throw new ArgumentException("A label map needs at least one label.", nameof(names)) : new LabelMap(list, false);
    }

    /// <summary>Integer class ids 0 … count − 1.</summary>
    public static LabelMap FromCount(int count)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        return new LabelMap(Enumerable.Range(0, count).Select(i => i.ToString(CultureInfo.InvariantCulture)).ToList(), true);
    }

    /// <summary>The class id of a name (for integer maps, the number as text).</summary>
    public int IdOf(string name) =>
        _ids.TryGetValue(name, out int id) ? id : throw new KeyNotFoundException($"'{name}' is not a label of this map ({this}).");

    /// <summary>"0=negative, 1=positive".</summary>
    public override string ToString() =>
        Names.Count <= 20
            ? string.Join(", ", Names.Select((n, i) => $"{i}={n}"))
            : string.Join(", ", Names.Take(20).Select((n, i) => $"{i}={n}")) + $", … ({Names.Count} labels)";

    /// <summary>Builds the map from every raw label of a dataset (see the class summary).</summary>
    internal static LabelMap Infer(IReadOnlyList<(object? Raw, RecordLocation At)> labels)
    {
        var keys = labels.Select(l => (Key: Normalize(l.Raw, l.At), l.At)).ToList();
        if (keys.All(k => k.Key.Integer is not null))
        {
            long max = -1;
            foreach (var (key, at) in keys)
            {
                long id = key.Integer!.Value;
                if (id < 0)
                {
                    throw new DatasetFormatException(at,
                        $"label {id} is negative; integer labels are class ids 0, 1, …. (GLUE test files mark missing labels with -1: use a labelled split.)");
                }
                if (id >= MaxClasses)
                {
                    throw new DatasetFormatException(at, $"label {id} is too large to be a class id (at most {MaxClasses - 1}).");
                }
                max = Math.Max(max, id);
            }
            return FromCount((int)max + 1);
        }
        List<string> names = keys.Select(k => k.Key.Text).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        return new LabelMap(names, false);
    }

    /// <summary>The class id of a raw label; a label the map does not know is an error naming the record.</summary>
    internal int IdOf(object? raw, RecordLocation at)
    {
        (long? integer, string text) = Normalize(raw, at);
        if (IntegerLabels)
        {
            return integer is long id && id >= 0 && id < Count
                ? (int)id
                : throw new DatasetFormatException(at,
                    $"label '{text}' is not one of the {Count} class ids (0 … {Count - 1}) of the training data.");
        }
        return _ids.TryGetValue(text, out int classId)
            ? classId
            : throw new DatasetFormatException(at, $"label '{text}' is not one of the labels of the training data ({this}).");
    }

    /// <summary>A raw label as (whole number or null, text). Text is trimmed: "1 " from a TSV means 1.</summary>
    private static (long? Integer, string Text) Normalize(object? raw, RecordLocation at)
    {
        switch (raw)
        {
            case null:
                throw new DatasetFormatException(at, "the label is null; every record needs a label.");
            case bool b:
                return (null, b ? "True" : "False");
            case sbyte or byte or short or ushort or int or uint or long:
                long integer = Convert.ToInt64(raw, CultureInfo.InvariantCulture);
                return (integer, integer.ToString(CultureInfo.InvariantCulture));
            case ulong u:
                return u <= long.MaxValue ? ((long)u, u.ToString(CultureInfo.InvariantCulture)) : (null, u.ToString(CultureInfo.InvariantCulture));
            case float or double or decimal:
                double d = Convert.ToDouble(raw, CultureInfo.InvariantCulture);
                return double.IsFinite(d) && Math.Floor(d) == d && Math.Abs(d) < 1e15
                    ? ((long)d, ((long)d).ToString(CultureInfo.InvariantCulture))
                    : throw new DatasetFormatException(at,
                        $"label {d.ToString(CultureInfo.InvariantCulture)} is not a whole number; classification labels are class ids or names (regression is not supported).");
            case JsonElement { ValueKind: JsonValueKind.Array or JsonValueKind.Object }:
                throw new DatasetFormatException(at, "the label is a JSON array or object; expected a class id or name.");
        }
        string text = (PropertyMapping.AsText(raw, at, "label") ?? "").Trim();
        if (text.Length == 0)
        {
            throw new DatasetFormatException(at, "the label is empty; every record needs a label.");
        }
        return (long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long parsed) ? parsed : null, text);
    }
}
